"""Large inputs through a real `knowledge-search serve`: the service's memory while it takes a 200 MB text file and a
1,000-page PDF, and the time to delete a document of 10,000 chunks.

    .venv/bin/python -m bench.large_ingest [--backend embedded|opensearch] [--text-mb 200] [--pages 1000]

Embedding 100,000+ chunks with the local model would take hours on this machine, so the server embeds through the
Bedrock provider pointed at the wire-level fake in tests/fakes (Cohere embed v3, 1,024 dimensions, batches of 32,
real boto3 calls over loopback): everything else (upload spooling, parsing, chunking, analysis, the store) is the
production path. The 200 MB file is ingested with KS_CHUNK_SIZE=8000 to keep the chunk count (and so the embedded
store's in-memory vector matrix, reported separately) moderate; the PDF and the 10,000-chunk document use the
default 600. Peak RSS is the kernel's VmHWM, reset before each phase (/proc/<pid>/clear_refs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import load_average, machine_line, proc_memory_mb
from bench.corpus import docstring_documents

OUT = Path(__file__).resolve().parent / "out" / "large"
COHERE = "cohere.embed-multilingual-v3"


# --- inputs ---------------------------------------------------------------------------------------------------
def _paragraphs() -> list[str]:
    out = []
    for _, text in docstring_documents():
        out += [p.strip() for p in text.split("\n\n") if len(p.strip()) > 80]
    return out


def make_text(path: Path, size: int) -> Path:
    """Docstring paragraphs, numbered so that no two are alike, until the file has ``size`` bytes."""
    if path.exists() and path.stat().st_size >= size:
        return path
    paragraphs, target, n = _paragraphs(), size, 0
    with open(path, "w", encoding="utf-8") as fh:
        while fh.tell() < target:
            fh.write(f"[{n}] {paragraphs[n % len(paragraphs)]}\n\n")
            n += 1
    return path


def make_pdf(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` pages of docstring text (reportlab, from the test extra)."""
    if path.exists():
        return path
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    paragraphs = _paragraphs()
    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.setTitle("Bench manual")
    k = 0
    for page in range(pages):
        y = 800
        pdf.drawString(50, y, f"Page {page + 1}")
        for _ in range(3):
            words = paragraphs[k % len(paragraphs)].split()
            k += 1
            line: list[str] = []
            y -= 24
            for word in words:
                line.append(word)
                if len(" ".join(line)) > 90:
                    pdf.drawString(50, y, " ".join(line))
                    line, y = [], y - 14
                    if y < 60:
                        break
            if line and y >= 60:
                pdf.drawString(50, y, " ".join(line))
        pdf.showPage()
    pdf.save()
    return path


# --- the server ---------------------------------------------------------------------------------------------
class Server:
    def __init__(self, data_dir: Path, backend: str, fake_url: str, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KS_", "AWS_"))}
        base.update(
            KS_DATA_DIR=str(data_dir),
            KS_RATE_LIMIT_PER_MINUTE="0",
            KS_LOG_FORMAT="text",
            KS_MAX_UPLOAD_MB="400",
            KS_EMBEDDING_PROVIDER="bedrock",
            KS_EMBEDDING_MODEL=COHERE,
            KS_CHAT_PROVIDER="local",
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=fake_url,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(data_dir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(data_dir / "no-aws-credentials"),
            **env,
        )
        if backend == "opensearch":
            base.update(
                KS_VECTOR_STORE="opensearch",
                KS_OPENSEARCH_URL=os.environ.get("KS_OPENSEARCH_URL", "http://127.0.0.1:9200"),
                KS_OPENSEARCH_INDEX=f"ks-bench-large-{self.port}",
            )
        self.index = base.get("KS_OPENSEARCH_INDEX")
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "knowledge-search"), "serve", "--port", str(self.port)],
            env=base,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=600)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.http.get("/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        if self.index:
            httpx.delete(f"{os.environ.get('KS_OPENSEARCH_URL', 'http://127.0.0.1:9200')}/{self.index}*", timeout=60)


class Memory:
    """The server's RSS now, and its peak since ``reset()`` (VmHWM, reset through clear_refs)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def reset(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def now(self) -> dict[str, float]:
        return proc_memory_mb(self.pid)


def _wait_indexed(server: Server, doc_id: str, label: str) -> dict[str, Any]:
    last = 0.0
    while True:
        doc = server.http.get(f"/v1/documents/{doc_id}").json()
        if doc["status"] in ("indexed", "failed"):
            return doc
        job = doc.get("job") or {}
        if time.monotonic() - last > 15:
            print(f"  ... {label}: {job.get('progress_done')}/{job.get('progress_total')} chunks", flush=True)
            last = time.monotonic()
        time.sleep(1)


def _upload_file(server: Server, memory: Memory, path: Path, content_type: str, label: str) -> dict[str, Any]:
    memory.reset()
    base = memory.now()["rss_mb"]
    started = time.perf_counter()
    with open(path, "rb") as fh:
        r = server.http.post("/v1/documents?wait=false", files={"file": (path.name, fh, content_type)})
    accepted = time.perf_counter() - started
    assert r.status_code == 202, r.text
    doc = _wait_indexed(server, r.json()["id"], label)
    took = time.perf_counter() - started
    peak = memory.now()["hwm_mb"]
    assert doc["status"] == "indexed", doc
    return {
        "input": label,
        "size_mb": path.stat().st_size / (1 << 20),
        "chunks": doc["chunk_count"],
        "accepted_s": accepted,
        "indexed_s": took,
        "rss_before_mb": base,
        "peak_mb": peak,
        "doc_id": doc["id"],
    }


def _delete(server: Server, doc_id: str) -> float:
    started = time.perf_counter()
    r = server.http.delete(f"/v1/documents/{doc_id}")
    took = time.perf_counter() - started
    assert r.status_code == 204, r.text
    assert server.http.get(f"/v1/documents/{doc_id}").status_code == 404
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("embedded", "opensearch"), default="embedded")
    ap.add_argument("--text-mb", type=int, default=200, help="0 skips the large text file")
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--delete-chunks", type=int, default=10_000)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fakes.bedrock_server import FakeBedrock

    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine_line()}; load average at start {load_average()}")
    text_file = make_text(OUT / f"text-{args.text_mb}mb.txt", args.text_mb << 20) if args.text_mb else None
    pdf_file = make_pdf(OUT / f"manual-{args.pages}p.pdf", args.pages)
    # At 600 characters with 100 of overlap this text makes a chunk per ~412 bytes.
    delete_file = make_text(OUT / f"delete-{args.delete_chunks}.txt", args.delete_chunks * 412)
    rows: list[dict[str, Any]] = []
    fake = FakeBedrock()
    fake.start()
    try:
        phases = [("default", {}), ("large", {"KS_CHUNK_SIZE": "8000", "KS_CHUNK_OVERLAP": "400"})]
        for phase, env in phases[: 2 if text_file else 1]:
            data_dir = OUT / f"data-{args.backend}-{phase}"
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            server = Server(data_dir, args.backend, fake.url, **env)
            memory = Memory(server.proc.pid)
            try:
                warm = server.http.post("/v1/documents", json={"text": "Warm-up: the canteen opens at noon."})
                assert warm.status_code == 201, warm.text
                print(f"server RSS after start and one small upload: {memory.now()['rss_mb']:.0f} MiB", flush=True)
                if phase == "default":
                    row = _upload_file(server, memory, pdf_file, "application/pdf", f"{args.pages}-page PDF")
                    rows.append(row)
                    row = _upload_file(server, memory, delete_file, "text/plain", "text for the delete")
                    row["delete_s"] = _delete(server, row["doc_id"])
                    rows.append(row)
                else:
                    assert text_file is not None
                    row = _upload_file(server, memory, text_file, "text/plain", f"{args.text_mb} MB text")
                    row["delete_s"] = _delete(server, row["doc_id"])
                    rows.append(row)
                print(f"  {rows[-1]}", flush=True)
            finally:
                server.stop()
    finally:
        fake.stop()
    print(f"\nload average at the end {load_average()}; backend {args.backend}")
    print("| input | size | chunks | accepted in | indexed in | chunks/s | RSS before | peak RSS | delete |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        delete = f"{r['delete_s']:.2f} s" if "delete_s" in r else "—"
        print(
            f"| {r['input']} | {r['size_mb']:.1f} MiB | {r['chunks']:,} | {r['accepted_s']:.1f} s | "
            f"{r['indexed_s']:.0f} s | {r['chunks'] / r['indexed_s']:.0f} | {r['rss_before_mb']:.0f} MiB | "
            f"{r['peak_mb']:.0f} MiB | {delete} |"
        )


if __name__ == "__main__":
    main()
