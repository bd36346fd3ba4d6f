"""OpenSearch as a distributed engine: `KS_OPENSEARCH_NODES=3 scripts/services up opensearch` starts a cluster of
three nodes on loopback, the service is given all three URLs, and one node is killed with SIGKILL while searches
and queued uploads run. Searches keep answering, the uploads retry and finish, the node rejoins, `doctor` finds
nothing to repair and no document is lost. Reports the failed requests, the longest gap between answered
searches, and the time until the node is back and the index green again."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.core.errors import StoreUnavailable
from tests.conftest import _truncate
from tests.deploy.conftest import ROOT, figure, wait_until
from tests.integration.test_process import BIN, Server, _env

pytestmark = pytest.mark.cluster

# Ports and state of this test's own cluster, apart from the shared single node (9200/9300).
PORT = int(os.environ.get("KS_TEST_CLUSTER_PORT", "9250"))
STATE = Path(os.environ.get("KS_TEST_CLUSTER_DIR", "/var/tmp/knowledge-search-cluster-test"))
CLUSTER_ENV = {"KS_OPENSEARCH_NODES": "3", "KS_OPENSEARCH_PORT": str(PORT), "KS_SERVICES_DIR": str(STATE)}
SEED_DOCS, QUEUED_DOCS = 12, 24


def _services(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "services"), *args],
        env={**os.environ, **CLUSTER_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    started = time.monotonic()
    up = _services("up", "opensearch")
    assert up.returncode == 0, up.stderr[-3000:]
    urls = next(line.split("=", 1)[1] for line in up.stdout.splitlines() if "KS_OPENSEARCH_URL=" in line)
    figure("3-node cluster: scripts/services up (s)", round(time.monotonic() - started))
    try:
        yield urls
    finally:
        _services("down", "opensearch")


def _node_pid(name: str) -> int:
    return int((STATE / "opensearch" / name.replace("ks-node-", "node") / "run" / "opensearch.pid").read_text())


def _health(url: str, index: str) -> dict:
    return httpx.get(f"{url}/_cluster/health/{index}", timeout=10).json()


def test_services_print_every_node(cluster: str):
    urls = cluster.split(",")
    assert urls == [f"http://127.0.0.1:{PORT + i}" for i in range(3)]
    nodes = httpx.get(f"{urls[1]}/_cat/nodes?format=json", timeout=10).json()
    assert sorted(n["name"] for n in nodes) == ["ks-node-1", "ks-node-2", "ks-node-3"]


def test_kill_a_node_under_load(cluster: str, migrated_postgres: str, tmp_path: Path):
    _truncate(migrated_postgres)
    index = f"ks-cluster-{uuid.uuid4().hex[:8]}"
    first = cluster.split(",")[0]
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=migrated_postgres,
        vector_store="opensearch",
        opensearch_url=cluster,
        opensearch_index=index,
    )
    # shards and replicas come from settings: three primaries, one replica of each, spread over the nodes
    server = Server(
        settings,
        KS_OPENSEARCH_SHARDS="3",
        KS_OPENSEARCH_REPLICAS="1",
        KS_OPENSEARCH_TIMEOUT_S="10",
        KS_INGEST_WORKERS="1",
        KS_JOB_BACKOFF_S="1",
        KS_JOB_MAX_ATTEMPTS="20",
    )
    http = httpx.Client(base_url=server.url, timeout=60)
    try:
        settings_body = httpx.get(f"{first}/{index}/_settings", timeout=10).json()
        concrete = next(iter(settings_body.values()))["settings"]["index"]
        assert (concrete["number_of_shards"], concrete["number_of_replicas"]) == ("3", "1")
        # the new index's replicas are allocated before the seeds go in; a seed the cluster could not take in time
        # (503, "stays queued and is retried") must still be indexed by its job, as the reply promises
        wait_until(lambda: _health(first, index)["status"] == "green", 60, "the new index turning green")
        queued = []
        for i in range(SEED_DOCS):
            r = http.post("/v1/documents", json={"title": f"seed {i}", "text": f"Rule {i}: badge {i} opens door {i}."})
            assert r.status_code == 201 or (r.status_code == 503 and r.json().get("job_id")), r.text
            if r.status_code == 503:
                queued.append(r.json()["job_id"])
        for job in queued:
            wait_until(lambda job=job: http.get(f"/v1/jobs/{job}").json()["status"] == "succeeded", 120, f"job {job}")
        wait_until(lambda: _health(first, index)["status"] == "green", 60, "the index turning green")
        assert http.get("/readyz").json()["status"] == "ok"

        stop = threading.Event()
        searches: list[tuple[float, bool]] = []
        queued: list[str] = []

        def search_loop() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                for n in range(5000):  # bounded in count and in time
                    if stop.is_set():
                        return
                    try:
                        r = c.post("/v1/search", json={"query": f"which door does badge {n % SEED_DOCS} open"})
                        ok = r.status_code == 200 and bool(r.json()["results"])
                    except httpx.HTTPError:
                        ok = False
                    searches.append((time.monotonic(), ok))

        def ingest_loop() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                for i in range(QUEUED_DOCS):
                    r = c.post(
                        "/v1/documents?wait=false", json={"text": f"Memo {i}: the canteen menu changes on day {i}."}
                    )
                    assert r.status_code == 202, r.text
                    queued.append(r.json()["id"])
                    if stop.wait(0.8):
                        return

        threads = [threading.Thread(target=search_loop), threading.Thread(target=ingest_loop)]
        for t in threads:
            t.start()
        time.sleep(5)
        # the node that heads the cluster and holds shards: its loss costs an election and a failover
        manager = httpx.get(f"{first}/_cat/cluster_manager?format=json", timeout=10).json()[0]["node"]
        killed_at = time.monotonic()
        os.kill(_node_pid(manager), signal.SIGKILL)
        survivor = next(u for u in cluster.split(",") if not u.endswith(str(PORT + int(manager[-1]) - 1)))
        wait_until(
            lambda: httpx.get(f"{survivor}/_cat/nodes?format=json", timeout=5).json().__len__() == 2,
            60,
            "the cluster dropping the killed node",
        )
        # while the node is away the index is yellow: ready, degraded
        ready = wait_until(lambda: http.get("/readyz"), 30, "/readyz answering")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        figure("node kill: /readyz during the outage", f"{ready.status_code} {ready.json()['checks']['chunk_store']}")
        # an index whose only copy lived on the killed node is red: a store on it is not ready
        _red_index_is_not_ready(cluster, survivor, manager)
        time.sleep(10)

        restarted_at = time.monotonic()
        up = _services("up", "opensearch")  # starts the missing node; it rejoins
        assert up.returncode == 0, up.stderr[-3000:]
        rejoined = time.monotonic()
        wait_until(lambda: _health(first, index)["status"] == "green", 180, "the index turning green again")
        green = time.monotonic()
        stop.set()
        for t in threads:
            t.join(60)

        # every queued upload finished, through the job retries
        def all_indexed() -> bool:
            return all(http.get(f"/v1/documents/{d}").json()["status"] == "indexed" for d in queued)

        wait_until(all_indexed, 180, "every queued upload being indexed", interval=2)
        assert len(queued) == QUEUED_DOCS

        oks = [t for t, ok in searches if ok]
        failed = sum(1 for _, ok in searches if not ok)
        during = [t for t in oks if t >= killed_at]
        gaps = [b - a for a, b in zip(oks, oks[1:], strict=False)]
        longest = max(gaps)
        figure("node kill: searches sent / failed", f"{len(searches)} / {failed}")
        figure("node kill: longest gap between answered searches (s)", round(longest, 2))
        figure("node kill: node restart to rejoined (s)", round(rejoined - restarted_at, 1))
        figure("node kill: kill to index green again (s)", round(green - killed_at, 1))
        figure("node kill: queued uploads indexed", f"{len(queued)} of {QUEUED_DOCS}")
        assert during and during[0] - killed_at < 30, "searches stopped answering after the kill"
        assert longest < 30, f"searches paused {longest:.1f} s"
        assert failed <= max(5, len(searches) // 20), f"{failed} of {len(searches)} searches failed"

        # nothing lost, nothing to repair
        docs = http.get("/v1/documents", params={"limit": 100}).json()["items"]
        assert len(docs) == SEED_DOCS + QUEUED_DOCS and all(d["status"] == "indexed" for d in docs)
        doctor = subprocess.run([str(BIN), "doctor"], env=_env(settings), capture_output=True, text=True, timeout=300)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        counts = httpx.post(f"{first}/{index}/_count", json={"query": {"match_all": {}}}, timeout=10).json()["count"]
        assert counts == sum(d["chunk_count"] for d in docs)
        assert http.get("/readyz").json()["status"] == "ok"
    finally:
        http.close()
        server.stop()
        httpx.delete(f"{first}/{index}*", timeout=30)


def _red_index_is_not_ready(cluster: str, survivor: str, killed: str) -> None:
    """A one-copy index pinned to the killed node is red; the store on it reports not ready (StoreUnavailable)."""
    from app.stores.vector.opensearch import OpenSearchChunkStore

    name = f"ks-red-{uuid.uuid4().hex[:8]}"
    body = {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "index.routing.allocation.require._name": killed}
    }
    httpx.put(f"{survivor}/{name}", json=body, params={"wait_for_active_shards": "0"}, timeout=30)
    try:
        store = OpenSearchChunkStore.from_settings(Settings(opensearch_url=cluster, opensearch_index=name))
        with pytest.raises(StoreUnavailable, match="red"):
            store.ping()
        store.close()
    finally:
        httpx.delete(f"{survivor}/{name}", timeout=30)
