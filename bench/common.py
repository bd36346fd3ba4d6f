"""Small helpers the benchmarks share: percentiles, machine and load lines, process memory and CPU from /proc,
a real `knowledge-search serve` to load."""

from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_line() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return f"{cpu}, {os.cpu_count()} cores, python {platform.python_version()}, commit {commit}"


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (current) and VmHWM (peak) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS", float("nan")), "hwm_mb": fields.get("VmHWM", float("nan"))}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (utime + stime from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    env: dict[str, str],
    timeout_s: float = 120,
    executable: Path | None = None,
    nice: int = 0,
    *,
    args: Sequence[str] = (),
    address_space: int | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`knowledge-search serve` (this environment's, or ``executable``) on a free loopback port with only the
    given KS_* settings (inherited ones are dropped), once /healthz answers; returns the process and its URL.
    ``args`` go after `serve`; ``address_space`` caps the server's memory (bytes), so that a server without a
    guard fails inside the cap instead of taking the machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def limits() -> None:
        if nice:  # every thread the server starts inherits its priority (a negative one needs root)
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    server = subprocess.Popen(
        [
            str(executable or Path(sys.executable).parent / "knowledge-search"),
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *args,
        ],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("KS_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limits if nice or address_space is not None else None,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit("server did not start")
        time.sleep(0.3)
