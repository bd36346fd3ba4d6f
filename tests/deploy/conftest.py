"""Fixtures for the production topology: the container image (podman), the compose stack, the nginx gateway and
OpenSearch as a cluster. These run real programs; without them the tests skip, unless KS_REQUIRE_SERVICES=1 (CI),
where a missing piece fails (scripts/test installs them).

Each test reports the figures it measured (image size, cold start, errors during a node kill, ...) with
``figure(name, value)``; they are printed at the end of the run and written to test-artifacts/topology.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
FIGURES: dict[str, Any] = {}


def figure(name: str, value: Any) -> None:
    """A measured figure, shown at the end of the run (and in test-artifacts/topology.json)."""
    FIGURES[name] = value


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("production topology: measured")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "topology.json").write_text(json.dumps(FIGURES, indent=2, ensure_ascii=False) + "\n")


def need_program(name: str, install: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed ({install}; scripts/test installs it when KS_REQUIRE_SERVICES=1)"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")


# --- podman ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def podman_env() -> dict[str, str]:
    """The environment podman runs with here (scripts/container env: runc, rlimits this host can grant)."""
    need_program("podman", "apt-get install podman runc slirp4netns")
    out = subprocess.run(
        [str(ROOT / "scripts" / "container"), "env"], capture_output=True, text=True, check=True
    ).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


def podman(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def image(podman_env: dict[str, str]) -> str:
    """The service's image, built from the Dockerfile by scripts/container (podman's layer cache makes a rebuild of
    an unchanged tree quick)."""
    name = os.environ.get("KS_IMAGE", "localhost/knowledge-search:dev")
    if os.environ.get("KS_IMAGE_BUILT") != "1":
        started = time.monotonic()
        proc = subprocess.run(
            [str(ROOT / "scripts" / "container"), "build"],
            env={**podman_env, "KS_IMAGE": name},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        figure("image build (s)", round(time.monotonic() - started))
        for line in proc.stderr.splitlines():
            if "STAND-IN" in line:
                figure("image base", line.split("STAND-IN: ", 1)[1])
    size = int(podman(podman_env, "image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
    figure("image size (MB)", round(size / 1e6))
    return name


# --- OpenSearch (the Postgres database of a test: empty_database in tests/conftest.py) ---------------------
@pytest.fixture
def index_name(opensearch_url: str) -> Iterator[str]:
    """An OpenSearch alias of this test's own; its indices are deleted at the end."""
    name = f"ks-deploy-{uuid.uuid4().hex[:10]}"
    yield name
    first = opensearch_url.split(",")[0].rstrip("/")
    with contextlib.suppress(httpx.HTTPError):
        httpx.delete(f"{first}/{name}*", timeout=30)
