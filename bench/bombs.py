"""Hostile uploads against a real `knowledge-search serve`: each file of bench.hostile is built, uploaded to a fresh
server (wait=false, then its job followed), and the server's peak RSS and its answer are printed.

    .venv/bin/python -m bench.bombs                      # every hostile file
    .venv/bin/python -m bench.bombs docx-bomb-300mb      # some of them
    .venv/bin/python -m bench.bombs --code-dir DIR       # the server from another checkout (e.g. `git archive`)

Each server runs under an address-space cap (--cap-gib, 8 by default), so that code without the guards fails
inside the cap instead of taking the machine; a server that dies or passes --timeout is reported as such.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import load_average, machine_line, proc_memory_mb, start_server
from bench.hostile import HOSTILE

OUT = Path(__file__).resolve().parent / "out" / "bombs"


class _PeakSampler(threading.Thread):
    """Samples the server's RSS every 50 ms (VmHWM is also read at the end; this catches a server that dies)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, proc_memory_mb(self.pid)["hwm_mb"])
            except (OSError, ValueError):
                return
            time.sleep(0.05)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak


def _serve(data_dir: Path, code_dir: Path | None, cap_gib: float) -> tuple[subprocess.Popen[bytes], str]:
    env = {"KS_DATA_DIR": str(data_dir), "KS_LOG_FORMAT": "text", "KS_RATE_LIMIT_PER_MINUTE": "0"}
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir)
    return start_server(env, timeout_s=180, address_space=int(cap_gib * (1 << 30)))


def _upload_and_follow(url: str, path: Path, timeout: float) -> str:
    """Upload without waiting, then follow the job: what the service answered and how the job ended."""
    with path.open("rb") as fh:
        r = httpx.post(f"{url}/v1/documents?wait=false", files={"file": (path.name, fh)}, timeout=timeout)
    if r.status_code >= 400:
        return f"{r.status_code} at upload: {r.json().get('detail', '')[:80]}"
    job = r.json()["job"]
    deadline = time.monotonic() + timeout
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=30).json()
    if job["status"] == "failed":
        return f"{r.status_code}, job failed: {(job.get('error') or '')[:80]}"
    if job["status"] == "succeeded":
        return f"{r.status_code}, indexed ({job['progress_done']} chunks)"
    return (
        f"{r.status_code}, still indexing after {timeout:.0f} s ({job['progress_done']}/{job['progress_total']} chunks)"
    )


def _run(name: str, path: Path, code_dir: Path | None, cap_gib: float, timeout: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ks-bombs-") as tmp:
        server, url = _serve(Path(tmp) / "data", code_dir, cap_gib)
        baseline = proc_memory_mb(server.pid)["rss_mb"]
        sampler = _PeakSampler(server.pid)
        sampler.start()
        started = time.perf_counter()
        try:
            answer = _upload_and_follow(url, path, timeout)
        except httpx.TimeoutException:
            answer = f"no answer within {timeout:.0f} s"
        except httpx.HTTPError as exc:
            answer = f"connection lost ({type(exc).__name__})"
        seconds = time.perf_counter() - started
        alive = server.poll() is None
        peak = sampler.stop()
        if alive:
            peak = max(peak, proc_memory_mb(server.pid)["hwm_mb"])
            try:
                alive = httpx.get(f"{url}/healthz", timeout=10).status_code == 200
            except httpx.HTTPError:
                alive = False
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {
        "name": name,
        "size": path.stat().st_size,
        "answer": answer,
        "seconds": seconds,
        "baseline": baseline,
        "peak": peak,
        "alive": alive,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"hostile files (default: all): {', '.join(HOSTILE)}")
    ap.add_argument("--code-dir", type=Path, help="run the server from this checkout (PYTHONPATH)")
    ap.add_argument("--cap-gib", type=float, default=8.0, help="address-space cap of each server")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to follow each upload's job")
    args = ap.parse_args()
    unknown = set(args.names) - set(HOSTILE)
    if unknown:
        ap.error(f"unknown hostile files: {', '.join(sorted(unknown))}")
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"# {machine_line()}; load {load_average()}; code {args.code_dir or 'this checkout'}")
    print("| file | size | answer | time | server RSS before | peak RSS | still serving |")
    print("|---|---|---|---|---|---|---|")
    for name in args.names or HOSTILE:
        filename, build = HOSTILE[name]
        path = OUT / filename
        if not path.exists():
            build(path)
        r = _run(name, path, args.code_dir, args.cap_gib, args.timeout)
        size = r["size"]
        assert isinstance(size, int)
        print(
            f"| {name} | {size / 1e6:.2f} MB | {r['answer']} | {r['seconds']:.1f} s | {r['baseline']:.0f} MiB "
            f"| {r['peak']:.0f} MiB | {'yes' if r['alive'] else 'NO'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
