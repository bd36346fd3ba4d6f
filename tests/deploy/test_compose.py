"""docker-compose.yml, run for real with podman-compose (Debian's), plus deploy/compose.standins.yml where the
registry images cannot be pulled: the services go healthy, `migrate` finishes before the app serves anything
(podman-compose 1.0.3 ignores `depends_on` conditions and starts `app` right after `migrate`, so the app answers
503 naming `knowledge-search migrate` until the migration is done), a document is ingested and found through the
published port, and `down -v` leaves no container, volume, network or pod behind."""

from __future__ import annotations

import json
import resource
import secrets
import subprocess
import threading
import time
import uuid
from datetime import datetime

import httpx
import pytest

from tests.deploy.conftest import ROOT, figure, free_port, need_program, podman, wait_until

pytestmark = pytest.mark.compose


@pytest.fixture(scope="module")
def compose_files(podman_env: dict[str, str]) -> list[str]:
    """The compose file, and the stand-ins override when the registry images cannot be had."""
    need_program("podman-compose", "apt-get install podman-compose")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "container"), "standins"], env=podman_env, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = ["-f", "docker-compose.yml"]
    if "STAND-IN" in proc.stderr:
        figure("compose images", "stand-ins (deploy/compose.standins.yml): the registry images cannot be pulled here")
        files += ["-f", "deploy/compose.standins.yml"]
    return files


def _pid_max() -> int:
    return int(open("/proc/sys/kernel/pid_max").read())  # podman's own thread limit follows it


def _finished_at(podman_env: dict[str, str], name: str) -> tuple[int, float]:
    out = podman(podman_env, "inspect", "--format", "{{.State.ExitCode}} {{.State.FinishedAt}}", name).stdout.split()
    stamp = " ".join(out[1:3])  # "2026-11-29 21:40:01.123456789 +0000 UTC"
    whole, _, frac = stamp.partition(".")
    at = datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0")[:6])
    return int(out[0]), at


def test_compose_up_healthy_migrated_serving_then_down_leaves_nothing(
    podman_env: dict[str, str], image: str, compose_files: list[str]
):
    project = f"kstest{uuid.uuid4().hex[:8]}"
    port = free_port()
    admin_key = secrets.token_urlsafe(24)
    env = {
        **podman_env,
        "KS_ADMIN_KEY": admin_key,
        "KS_IMAGE": image,
        "KS_HTTP_PORT": str(port),
        # this host grants at most its own hard limit (no CAP_SYS_RESOURCE)
        "KS_OPENSEARCH_NOFILE": str(min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])),
        "KS_OPENSEARCH_NPROC": str(min(65535, resource.getrlimit(resource.RLIMIT_NPROC)[1], _pid_max())),
    }
    compose = ["podman-compose", "-p", project, *compose_files]
    url = f"http://127.0.0.1:{port}"
    seen: list[tuple[float, int, str]] = []  # what a client polling the API saw while the stack came up
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                r = httpx.get(f"{url}/v1/documents", headers={"Authorization": f"Bearer {admin_key}"}, timeout=5)
                seen.append((time.time(), r.status_code, r.text[:300]))
            except httpx.HTTPError:
                pass
            stop.wait(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    started = time.monotonic()
    up = subprocess.run([*compose, "up", "-d"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    poller.start()
    try:
        # podman schedules health checks with systemd timers; without systemd, run them as that scheduler would
        healthy_at = {}
        for service in ("postgres", "opensearch", "app"):
            name = f"{project}_{service}_1"
            wait_until(
                lambda name=name: podman(env, "healthcheck", "run", name, check=False).returncode == 0,
                300,
                f"{service} healthy",
                interval=2,
            )
            healthy_at[service] = round(time.monotonic() - started, 1)
        figure("compose: up -d to every service healthy (s)", max(healthy_at.values()))
        code, migrated_at = _finished_at(env, f"{project}_migrate_1")
        assert code == 0, podman(env, "logs", f"{project}_migrate_1", check=False).stderr[-2000:]
        assert "database at revision" in podman(env, "logs", f"{project}_migrate_1").stdout

        headers = {"Authorization": f"Bearer {admin_key}"}
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 120, "the app ready")
        doc = httpx.post(
            f"{url}/v1/documents",
            headers=headers,
            json={"title": "Compose", "text": "The compose stack keeps its chunks in OpenSearch.", "collection": "c"},
            timeout=120,
        )
        assert doc.status_code == 201, doc.text
        found = httpx.post(f"{url}/v1/search", headers=headers, json={"query": "where are the chunks kept"}, timeout=60)
        assert found.json()["results"][0]["document_id"] == doc.json()["id"]
        figure("compose: up -d to a document found through the published port (s)", round(time.monotonic() - started))
    finally:
        stop.set()
        down = subprocess.run([*compose, "down", "-v"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stderr[-3000:]

    # the app never answered anything but 503 (naming migrate) before the migration finished, and never 500
    assert all(status != 500 for _, status, _ in seen), [s for s in seen if s[1] == 500][:3]
    for at, status, body in seen:
        if at < migrated_at:
            assert status == 503 and "knowledge-search migrate" in json.loads(body)["detail"], (status, body)
    assert any(status == 200 for _, status, _ in seen)
    early = [s for s in seen if s[0] < migrated_at]
    figure("compose: API answers before migrate finished", f"{len(early)}, all 503 naming migrate")

    label = f"label=io.podman.compose.project={project}"
    assert podman(env, "ps", "-a", "-q", "--filter", label).stdout.strip() == ""
    assert podman(env, "volume", "ls", "-q", "--filter", label).stdout.strip() == ""
    leftovers = [
        n
        for n in podman(env, "network", "ls", "--format", "{{.Name}}").stdout.split()
        + podman(env, "pod", "ls", "--format", "{{.Name}}").stdout.split()
        if project in n
    ]
    if leftovers:  # podman-compose 1.0.3's down keeps the network it made; remove it so nothing stays
        for name in leftovers:
            podman(env, "network", "rm", "-f", name, check=False)
        figure("compose: left by down -v (removed by the test)", ", ".join(leftovers))
