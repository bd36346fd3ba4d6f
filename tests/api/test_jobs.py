"""Ingest jobs: status and progress, retries of transient failures, and consistency repair (both backends)."""

from __future__ import annotations

from app.ingest.service import IngestService, Upload
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
    assert JobWorker(container.sessions, container.ingest).run_pending() == 1
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
    JobWorker(container.sessions, container.ingest).run_pending()
    doc = client.get(f"/v1/documents/{r.json()['id']}").json()
    assert doc["status"] == "failed" and "PDF" in doc["error"]
    assert doc["job"]["status"] == "failed" and doc["job"]["attempts"] == 1


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
    submitted = during_outage.submit(Upload.of_bytes(b"The staff canteen serves curry on Wednesdays."))
    doc = during_outage.run_job(submitted.job.id)
    assert doc.status == "queued" and "retrying" in doc.error
    job = client.get(f"/v1/jobs/{submitted.job.id}").json()
    assert job["status"] == "queued" and job["attempts"] == 1 and "retrying" in job["error"]
    # the store is back: the worker takes the job again and finishes it
    assert JobWorker(container.sessions, container.ingest).run_pending() == 1
    done = client.get(f"/v1/documents/{doc.id}").json()
    assert done["status"] == "indexed" and done["error"] is None and done["job"]["attempts"] == 2
    assert client.post("/v1/search", json={"query": "canteen curry"}).json()["results"][0]["document_id"] == doc.id


def test_store_outage_past_the_attempt_budget_fails_with_the_reason(container, settings):
    dead = OpenSearchChunkStore.from_settings(
        settings.model_copy(update={"opensearch_url": "http://127.0.0.1:9", "opensearch_timeout_s": 0.5})
    )
    ingest = _ingest_with(container, dead, max_attempts=1, backoff_s=0.0)
    submitted = ingest.submit(Upload.of_bytes(b"Umbrellas can be borrowed at reception."))
    doc = ingest.run_job(submitted.job.id)
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
            return container.ingest.submit(Upload.of_bytes(text, collection=f"fresh-{round_}"))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(submit, range(8)))
        assert len({r.document.id for r in results}) == 1
        assert sum(r.created for r in results) == 1
