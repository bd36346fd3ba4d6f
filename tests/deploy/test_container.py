"""The image built from the Dockerfile, run with podman: it runs as a non-root user, `knowledge-search migrate`
works as a one-shot container, and the default command serves ingest, search and chat against a real Postgres and
a real OpenSearch. Prints the image size and the cold start (container start to /healthz, and to /readyz)."""

from __future__ import annotations

import secrets
import subprocess
import time
import uuid

import httpx
import pytest

from tests.deploy.conftest import figure, free_port, podman, wait_until

pytestmark = pytest.mark.container

# slirp4netns with allow_host_loopback: the container reaches this host's 127.0.0.1 as 10.0.2.2, so the shared
# test Postgres and OpenSearch (which listen on loopback only) serve it, and the image's own CMD (port 8000) and
# HEALTHCHECK are used unchanged behind a published port.
NETWORK = "slirp4netns:allow_host_loopback=true"
HOST = "10.0.2.2"


def _inside(url: str) -> str:
    return url.replace("127.0.0.1", HOST).replace("localhost", HOST)


def test_image_runs_as_a_non_root_user(podman_env: dict[str, str], image: str):
    user = podman(podman_env, "image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "ks"
    ids = podman(podman_env, "run", "--rm", image, "id").stdout
    assert "uid=0(" not in ids and "uid=999(ks)" in ids, ids
    # and the HEALTHCHECK survived the build (podman keeps it only in the docker image format)
    health = podman(podman_env, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout
    assert "/healthz" in health, health


def test_migrate_once_then_serve_ingest_search_chat(
    podman_env: dict[str, str], image: str, empty_database: str, opensearch_url: str, index_name: str
):
    admin_key = secrets.token_urlsafe(24)
    env = {
        "KS_DATABASE_URL": _inside(empty_database),
        "KS_VECTOR_STORE": "opensearch",
        "KS_OPENSEARCH_URL": _inside(opensearch_url),
        "KS_OPENSEARCH_INDEX": index_name,
        "KS_ADMIN_KEY": admin_key,
    }
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]

    # the one-shot migration: exits 0 and says which revision the database is at; a second run changes nothing
    for _ in range(2):
        migrated = podman(
            podman_env, "run", "--rm", "--network", NETWORK, *env_args, image, "knowledge-search", "migrate"
        )
        assert "database at revision" in migrated.stdout, migrated.stdout + migrated.stderr

    name = f"ks-test-app-{uuid.uuid4().hex[:8]}"
    port = free_port()
    started = time.monotonic()
    podman(
        podman_env, "run", "-d", "--name", name, "--network", NETWORK, "-p", f"127.0.0.1:{port}:8000", *env_args, image
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 180, "/healthz answering")
        healthy = time.monotonic() - started
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 60, "/readyz answering 200")
        ready = time.monotonic() - started
        figure("cold start: podman run to /healthz 200 (s)", round(healthy, 1))
        figure("cold start: podman run to /readyz 200 (s)", round(ready, 1))
        # the image's HEALTHCHECK passes (podman runs it on demand: no systemd timer schedules it here)
        assert podman(podman_env, "healthcheck", "run", name, check=False).returncode == 0
        assert "uid=999(ks)" in podman(podman_env, "exec", name, "id").stdout

        headers = {"Authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            assert http.get("/v1/documents").status_code == 200
            assert httpx.get(f"{url}/v1/documents", timeout=10).status_code == 401  # a key is required
            doc = http.post(
                "/v1/documents",
                json={
                    "title": "Parking",
                    "text": "Visitors park on level B2 of the north garage.",
                    "collection": "ops",
                },
            )
            assert doc.status_code == 201, doc.text
            hits = http.post("/v1/search", json={"query": "where do visitors park", "mode": "hybrid"}).json()
            assert hits["results"][0]["document_id"] == doc.json()["id"]
            answer = http.post("/v1/chat", json={"message": "Where do visitors park?"}).json()
            assert "B2" in answer["answer"] and answer["citations"], answer
    finally:
        logs = podman(podman_env, "logs", name, check=False)
        podman(podman_env, "rm", "-f", "-t", "5", name, check=False)
    # secrets never reach the log
    assert admin_key not in logs.stdout + logs.stderr


def test_container_refuses_to_serve_publicly_without_a_key(podman_env: dict[str, str], image: str):
    proc = subprocess.run(["podman", "run", "--rm", image], env=podman_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "KS_ADMIN_KEY" in proc.stdout + proc.stderr
