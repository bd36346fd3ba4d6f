"""Ingest jobs: status and progress, retries of transient failures, and consistency repair (both backends)."""

from __future__ import annotations

from app.access.caller import SYSTEM
from app.ingest.service import IngestService
from app.ingest.upload import Outcome, Upload
from app.ingest.worker import JobWorker
from app.stores.vector.opensearch import OpenSearchChunkStore
from tests.helpers import PROBLEM, upload_text


def test_job_status_progress_and_listing(client, container):
    queued = client.post("/v1/documents?wait=false", json={"text": "Lockers are emptied every Friday evening."})
    assert queued.status_code == 202
    job_id = queued.json()["job"]["id"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["attempts"] == 0 and job["document_id"] == queued.json()["id"]
    assert [j["id"] for j in client.get("/v1/jobs", params={"status": "queued"}).json()["items"]] == [job_id]
    assert JobWorker(container.ingest).run_pending() == 1
    done = client.get(f"/v1/jobs/{job_id}").json()
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert done["progress_done"] == done["progress_total"] == 1
    assert client.get("/v1/jobs", params={"status": "queued"}).json()["items"] == []
    assert client.get("/v1/jobs", params={"collection": "default"}).json()["items"][0]["id"] == job_id
    assert client.get("/v1/jobs/nope").status_code == 404
    bad = client.get("/v1/jobs", params={"status": "exploded"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)


def test_unparseable_file_fails_at_once_with_a_reason(client, container):
    r = client.post(
        "/v1/documents?wait=false", files={"file": ("scan.pdf", b"%PDF-1.4\nnot really", "application/pdf")}
    )
    if r.status_code == 422:  # refused before queueing: also a clear answer
        return
    assert r.status_code == 202
    JobWorker(container.ingest).run_pending()
    doc = client.get(f"/v1/documents/{r.json()['id']}").json()
    assert doc["status"] == "failed" and "PDF" in doc["error"]
    assert doc["job"]["status"] == "failed" and doc["job"]["attempts"] == 1


def run(ingest: IngestService, job_id: str):
    """Claim a queued job and run it, as a worker does."""
    holder = ingest.jobs.claim(job_id)
    assert holder is not None
    return ingest.jobs.run(job_id, holder)


def _ingest_with(container, store, **kw) -> IngestService:
    return IngestService(
        container.sessions,
        store,
        container.embedder,
        container.analyzer,
        container.ingest._blobs,
        chunk_size=600,
        chunk_overlap=100,
        max_upload_bytes=10_000_000,
        **kw,
    )


def test_a_store_outage_is_retried_with_backoff_then_succeeds(client, container, settings):
    dead = OpenSearchChunkStore.from_settings(
        settings.model_copy(update={"opensearch_url": "http://127.0.0.1:9", "opensearch_timeout_s": 0.5})
    )
    during_outage = _ingest_with(container, dead, max_attempts=3, backoff_s=0.0)
    submitted = during_outage.upsert(
        Upload.of_bytes(b"The staff canteen serves curry on Wednesdays."), SYSTEM, wait=False
    )
    doc = run(during_outage, submitted.job.id)
    assert doc.status == "queued" and "retrying" in doc.error
    job = client.get(f"/v1/jobs/{submitted.job.id}").json()
    assert job["status"] == "queued" and job["attempts"] == 1 and "retrying" in job["error"]
    # the store is back: the worker takes the job again and finishes it
    assert JobWorker(container.ingest).run_pending() == 1
    done = client.get(f"/v1/documents/{doc.id}").json()
    assert done["status"] == "indexed" and done["error"] is None and done["job"]["attempts"] == 2
    assert client.post("/v1/search", json={"query": "canteen curry"}).json()["results"][0]["document_id"] == doc.id


def test_store_outage_past_the_attempt_budget_fails_with_the_reason(container, settings):
    dead = OpenSearchChunkStore.from_settings(
        settings.model_copy(update={"opensearch_url": "http://127.0.0.1:9", "opensearch_timeout_s": 0.5})
    )
    ingest = _ingest_with(container, dead, max_attempts=1, backoff_s=0.0)
    submitted = ingest.upsert(Upload.of_bytes(b"Umbrellas can be borrowed at reception."), SYSTEM, wait=False)
    doc = run(ingest, submitted.job.id)
    assert doc.status == "failed" and "OpenSearch" in doc.error


def test_wait_true_upload_during_an_outage_is_503_and_stays_queued(client, container, settings):
    dead = OpenSearchChunkStore.from_settings(
        settings.model_copy(update={"opensearch_url": "http://127.0.0.1:9", "opensearch_timeout_s": 0.5})
    )
    container.ingest = _ingest_with(container, dead, max_attempts=3, backoff_s=0.0)
    r = client.post("/v1/documents", json={"text": "Bicycles park behind building C."})
    assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert "retried automatically" in body["detail"] and r.headers["Retry-After"]
    assert client.get(f"/v1/documents/{body['document_id']}").json()["status"] == "queued"


def test_doctor_finds_and_repairs_what_a_crash_leaves(client, container):
    kept = upload_text(client, "Printer paper is on the second shelf.")
    half_deleted = upload_text(client, "Visitors sign in at the front desk.")
    lost = upload_text(client, "Fire drills happen twice a year.")
    # the states a kill -9 can leave between two steps:
    with container.sessions.begin() as session:  # killed after marking a delete, before removing chunks
        from app.stores.sql.repositories import DocumentRepository

        DocumentRepository(session).get(half_deleted["id"]).status = "deleting"
    container.store.delete_document(lost["id"])  # chunks gone, row still says indexed
    from tests.integration.test_chunk_stores import chunk

    container.store.add([chunk("ghost-1", document_id="0" * 32, vector=container.embedder.embed_query("x"))])
    report = container.ingest.inspect()
    assert report.unfinished_deletes == [half_deleted["id"]]
    assert report.orphan_chunk_documents == ["0" * 32]
    assert report.wrong_chunk_counts == {lost["id"]: (1, 0)}
    container.ingest.recover(report)
    assert container.ingest.inspect().clean
    assert client.get(f"/v1/documents/{half_deleted['id']}").status_code == 404
    failed = client.get(f"/v1/documents/{lost['id']}").json()
    assert failed["status"] == "failed" and "upload the document again" in failed["error"]
    assert client.get(f"/v1/documents/{kept['id']}").json()["status"] == "indexed"
    assert "0" * 32 not in container.store.document_ids()


def test_concurrent_uploads_of_one_text_into_a_new_collection_make_one_document(container):
    """Eight clients post the same text into a collection that does not exist yet, all at once: one document,
    every client gets it, none gets an error (both the collection and the document are created only once)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    for round_ in range(6):
        barrier = threading.Barrier(8)
        text = f"Round {round_}: the visitor wifi password changes every Monday.".encode()

        def submit(_: int, text: bytes = text, barrier: threading.Barrier = barrier, round_: int = round_):
            barrier.wait()
            return container.ingest.upsert(Upload.of_bytes(text, collection=f"fresh-{round_}"), SYSTEM, wait=False)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(submit, range(8)))
        assert len({r.document.id for r in results}) == 1
        assert sum(r.outcome == Outcome.QUEUED and r.job is not None for r in results) == 8


class SlowEmbedder:
    """A provider whose every batch takes a while: long enough for leases to run out during one job."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds, self.calls = inner, seconds, 0
        self.model_id, self.dimension = inner.model_id, inner.dimension

    def embed_documents(self, texts):
        import time

        self.calls += 1
        time.sleep(self.seconds)
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


def _slow_ingest(container, seconds: float, **kw) -> tuple[IngestService, SlowEmbedder]:
    slow = SlowEmbedder(container.embedder, seconds)
    ingest = IngestService(
        container.sessions,
        container.store,
        slow,
        container.analyzer,
        container.ingest._blobs,
        chunk_size=200,
        chunk_overlap=0,
        max_upload_bytes=10_000_000,
        embed_batch_size=2,
        **kw,
    )
    return ingest, slow


LONG = "\n\n".join(
    f"Paragraph {i}: the archive room on floor {i} keeps the records of year {2000 + i}." for i in range(24)
)


def test_a_job_whose_worker_keeps_dying_is_given_up_with_a_reason(client, container):
    """Issue 12, item 5: with KS_JOB_MAX_ATTEMPTS=2, kill/restart cycles left a job running with attempts 5."""
    ingest, _ = _slow_ingest(container, 0.0, max_attempts=2, lease_s=0.2)
    queued = ingest.upsert(Upload.of_bytes(b"The mail room opens at nine."), SYSTEM, wait=False)
    import time

    for _ in range(2):  # a worker claims the job and dies with it (no heartbeat, no result)
        assert ingest.jobs.claim_next() is not None
        time.sleep(0.3)  # its lease runs out
    claimed = ingest.jobs.claim_next()
    assert claimed is not None
    doc = ingest.jobs.run(*claimed)
    assert doc.status == "failed" and "gave up after 2 attempts" in doc.error
    job = client.get(f"/v1/jobs/{queued.job.id}").json()
    assert job["status"] == "failed" and job["attempts"] == 3 and "worker stopped" in job["error"]
    assert ingest.jobs.claim_next() is None  # never taken again


def test_a_long_job_keeps_its_lease_and_runs_once(client, container):
    """Item 5: a parse longer than KS_JOB_LEASE_S ran the same job twice; the heartbeat now renews the lease."""
    import threading

    ingest, slow = _slow_ingest(container, 0.4, lease_s=0.6)  # 12 batches of 0.4 s: about 5 s, leases of 0.6 s
    queued = ingest.upsert(Upload.of_bytes(LONG.encode()), SYSTEM, wait=False)
    claimed = ingest.jobs.claim_next()
    assert claimed is not None
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("doc", ingest.jobs.run(*claimed)))
    runner.start()
    stolen = []
    while runner.is_alive():  # another worker keeps asking for work the whole time
        stolen.append(ingest.jobs.claim_next())
        runner.join(0.25)
    assert not any(stolen), "another worker took a job whose worker was alive"
    assert result["doc"].status == "indexed"
    job = client.get(f"/v1/jobs/{queued.job.id}").json()
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert slow.calls == job["progress_total"] // 2 + job["progress_total"] % 2  # every batch embedded once


def test_deleting_a_document_stops_its_running_job(client, container):
    """Item 5: a deleted document's job kept the embedder busy for minutes and left staged chunks."""
    import threading
    import time

    ingest, slow = _slow_ingest(container, 0.3, lease_s=30)
    queued = ingest.upsert(Upload.of_bytes(LONG.encode()), SYSTEM, wait=False)
    claimed = ingest.jobs.claim_next()
    errors = []

    def work():
        try:
            ingest.jobs.run(*claimed)
        except Exception as exc:  # the job ends with "deleted while it was being ingested"
            errors.append(exc)

    runner = threading.Thread(target=work)
    runner.start()
    while slow.calls < 2:
        time.sleep(0.05)
    ingest.delete(queued.document.id, SYSTEM)
    stopped_at = slow.calls
    runner.join(10)
    assert not runner.is_alive()
    assert slow.calls <= stopped_at + 1  # at most the batch in flight finishes
    assert errors and "deleted" in str(errors[0])
    assert container.store.count(queued.document.id) == 0  # nothing staged stays
    assert container.ingest.inspect().clean
