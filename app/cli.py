"""The same services from the command line: serve, ingest, search, ask, migrate, reindex."""

from __future__ import annotations

import ipaddress
import json
import logging
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.core.config import Settings
from app.core.errors import AppError, ConfigurationError

app = typer.Typer(help="knowledge-search: ingest, search and chat with your documents.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _container(settings: Settings | None = None, *, wait: bool = False):  # type: ignore[no-untyped-def]
    """The services; ``wait``: give a chunk store that is still starting KS_STARTUP_WAIT_S to answer."""
    from app.container import build_container

    settings = settings or Settings()
    try:
        return build_container(settings, wait_s=settings.startup_wait_s if wait else 0.0)
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    sample: Annotated[bool, typer.Option("--sample", help="Load the bundled sample corpus first.")] = False,
    workers_log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Run the REST API (Swagger UI at /docs)."""
    import uvicorn

    from app.core.observability import configure_logging
    from app.main import create_app

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    if settings.admin_key is None and not _is_loopback(host):
        err.print(
            f"[red]error:[/red] refusing to serve on {host} without an API key. Set KS_ADMIN_KEY, "
            "or serve on 127.0.0.1."
        )
        raise typer.Exit(2)
    if settings.admin_key is None:
        logging.getLogger("app").warning("KS_ADMIN_KEY is not set: serving without authentication on loopback only")
        err.print("[yellow]warning:[/yellow] KS_ADMIN_KEY is not set: no authentication (loopback only)")
    container = _container(settings, wait=True)
    _warn_if_not_migrated(container)
    if sample:
        _ingest_paths(container, [Path(str(files("app") / "samples"))], "samples", {}, workers=2)
    app_ = create_app(settings, container=container, close_container=True)
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_level=workers_log_level,
        log_config=None,  # uvicorn's records go through configure_logging's handler
        access_log=False,  # the app writes its own access line, with route, request id and key id
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        root_path=settings.root_path,  # the gateway strips this prefix; /docs and the page link under it
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


@app.command()
def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(help="Files or folders (searched recursively), or s3://bucket/prefix to sync from S3."),
    ],
    collection: Annotated[str, typer.Option(help="Collection to put the documents in.")] = "default",
    metadata: Annotated[str, typer.Option(help='Metadata for every local file, as JSON: {"dept": "hr"}')] = "{}",
    workers: Annotated[
        int, typer.Option(min=1, max=32, help="Files processed at once (one parses while another embeds).")
    ] = 2,
) -> None:
    """Ingest documents, with a progress bar. Files whose content is already indexed are skipped, so a run that
    was interrupted resumes where it stopped. An s3:// prefix is synced: new and changed objects are indexed,
    documents whose object is gone are deleted, and the counts are printed."""
    try:
        meta = json.loads(metadata)
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError as exc:
        err.print('[red]error:[/red] --metadata must be a JSON object, like {"dept": "hr"}')
        raise typer.Exit(2) from exc
    s3_uris = [p for p in paths if p.startswith("s3://")]
    local = [Path(p) for p in paths if not p.startswith("s3://")]
    for path in local:
        if not path.exists():
            err.print(f"[red]error:[/red] Invalid value for 'PATHS...': Path '{path}' does not exist.", soft_wrap=True)
            raise typer.Exit(2)
    container = _container()
    try:
        failed = _ingest_paths(container, local, collection, meta, workers) if local else 0
        if s3_uris:
            failed += _sync_s3(container, s3_uris, collection)
    finally:
        container.close()
    raise typer.Exit(1 if failed else 0)


def _sync_s3(container: Any, uris: list[str], collection: str) -> int:
    """Sync each s3://bucket/prefix into the collection; returns how many objects (or whole syncs) failed."""
    from pydantic import ValidationError
    from rich.markup import escape

    from app.api.sources import S3SyncCreate
    from app.ingest.sources import build_s3_sync

    targets = []
    for uri in uris:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        try:
            targets.append(S3SyncCreate(bucket=bucket, prefix=prefix, collection=collection))
        except ValidationError as exc:
            err.print(f"[red]error:[/red] {escape(uri)}: {exc.errors()[0]['msg']}", soft_wrap=True)
            raise typer.Exit(2) from exc
    try:
        service = build_s3_sync(container)  # one boto3 client for every prefix
    except AppError as exc:
        err.print(f"[red]error:[/red] {escape(exc.detail)}", soft_wrap=True)
        raise typer.Exit(2) from exc
    failed = 0
    for uri, target in zip(uris, targets, strict=True):
        bucket, prefix = target.bucket, target.prefix
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
        ) as progress:
            task = progress.add_task(f"{escape(uri)} (listing)", total=None)

            def advance(done: int, total: int, report: Any, task: Any = task, uri: str = uri) -> None:
                status = f"{report.new} new, {report.modified} modified, {report.failed} failed"
                progress.update(task, completed=done, total=total, description=f"{escape(uri)} ({status})")

            try:
                report = service.sync(bucket, prefix, collection, progress=advance)
            except AppError as exc:
                err.print(f"[red]error:[/red] {escape(uri)}: {escape(exc.detail)}", soft_wrap=True)
                failed += 1
                continue
        for line in report.errors:
            err.print(f"[red]failed[/red] {escape(line)}", soft_wrap=True)
        console.print(f"{report.line()} ({uri} -> collection '{collection}')", markup=False, soft_wrap=True)
        failed += report.failed
    return failed


def _ingest_paths(container: Any, paths: list[Path], collection: str, meta: dict[str, Any], workers: int) -> int:
    """Index a folder tree (app.ingest.sources.folder) with progress bars; returns how many files failed."""
    from rich.markup import escape

    from app.ingest.sources.folder import FolderIngest, FolderProgress, find_files

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as bars:

        class Bars(FolderProgress):
            def checking(self, total: int) -> None:
                self.scan = bars.add_task("checking files", total=total)

            def checked(self, path: Path) -> None:
                bars.advance(self.scan)

            def indexing(self, total: int) -> None:
                self.files = bars.add_task("files", total=total)
                self.chunk_bar = bars.add_task("chunks", total=None)

            def chunks(self, done: int, total: int) -> None:
                bars.update(self.chunk_bar, completed=done, total=total)

            def finished(self, path: Path, error: str | None) -> None:
                if error is not None:
                    err.print(f"[red]failed[/red] {escape(str(path))}: {escape(error)}", soft_wrap=True)
                if hasattr(self, "files"):
                    bars.update(self.files, advance=1, description=f"files ({path.name[:40]})")

        report = FolderIngest(container.ingest, container.sessions, workers=workers).run(
            find_files(paths), collection, meta, Bars()
        )
    err.print(report.line(collection))
    return report.failed


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, semantic or keyword.")] = "hybrid",
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
) -> None:
    """Search the indexed documents."""
    from app.stores.vector.base import ChunkFilter

    if mode not in ("hybrid", "semantic", "keyword"):
        err.print("[red]error:[/red] --mode is one of hybrid, semantic, keyword")
        raise typer.Exit(2)
    container = _container()
    try:
        outcome = container.search.search(query, ChunkFilter(collection=collection), top_k, mode)  # type: ignore[arg-type]
    finally:
        container.close()
    table = Table("score", "title", "where", "text", title=f"{len(outcome.hits)} results in {outcome.took_ms} ms")
    for h in outcome.hits:
        where = " > ".join(h.chunk.source.heading_path) or (f"p. {h.chunk.source.page}" if h.chunk.source.page else "")
        table.add_row(f"{h.score:.4f}", h.chunk.title, where, h.chunk.text[:160].replace("\n", " "))
    console.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
) -> None:
    """Ask a question; the answer cites the documents."""
    from app.stores.vector.base import ChunkFilter

    container = _container()
    try:
        answer = container.chat.ask(question, ChunkFilter(collection=collection))
    finally:
        container.close()
    console.print(answer.answer)
    for c in answer.citations:
        console.print(f"  [{c.n}] {c.title} ({c.document_id}): {c.quote[:120]}")


@app.command()
def migrate() -> None:
    """Apply database migrations (Postgres deployments run this before starting the service)."""
    from app.stores.sql import migrate as migrations
    from app.stores.sql.session import build_engine

    settings = Settings()
    engine = build_engine(settings)
    _wait_for_database(engine, settings.startup_wait_s)
    migrations.upgrade(engine)
    console.print(f"database at revision {migrations.current_revision(engine)}")


def _wait_for_database(engine: Any, wait_s: float) -> None:
    """In a container stack the database may still be starting: wait up to KS_STARTUP_WAIT_S for it."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                err.print(f"[red]error:[/red] the database does not answer: {exc.orig}. Check KS_DATABASE_URL.")
                raise typer.Exit(1) from exc
            err.print("waiting for the database to answer (KS_STARTUP_WAIT_S)...")
            time.sleep(2)


def _warn_if_not_migrated(container: Any) -> None:
    """Say at start when the database needs `migrate`; the service still starts and answers 503 until it ran."""
    from app.core.errors import AppError

    try:
        container.schema.check()
    except AppError as exc:
        logging.getLogger("app").warning("%s; until then /readyz and the API answer 503", exc.detail)
        err.print(f"[yellow]warning:[/yellow] {exc.detail}; until then /readyz and the API answer 503")


@app.command()
def reindex(
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="Keep the old index (OpenSearch) or file (chunks.db.old).")
    ] = False,
) -> None:
    """Rebuild the chunk index with the configured embedding model (run it after changing KS_EMBEDDING_MODEL).

    Re-embeds every stored chunk. OpenSearch: builds a new index beside the old one and moves the alias to it,
    so searches keep working (pause uploads meanwhile, restart the service with the new model right after).
    Embedded: STOP THE SERVICE FIRST; the new chunks.db replaces the old one when it is complete.
    """
    from app.ingest.reindex import reindex as rebuild
    from app.providers.factory import build_embedder
    from app.text.analysis import default_analyzer

    settings = Settings()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as progress:
        task = progress.add_task("documents", total=None)

        def advance(done: int, total: int, chunks: int) -> None:
            progress.update(task, completed=done, total=total, description=f"documents ({chunks} chunks)")

        try:
            report = rebuild(
                settings, build_embedder(settings), default_analyzer(), keep_old=keep_old, progress=advance
            )
        except ConfigurationError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        except AppError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(1) from exc
    new = f"{report.new.embedding_model} (dimension {report.new.dimension})"
    if report.old is None:
        console.print(f"nothing to re-index at {report.source or report.target}: the index is created at start-up")
        return
    console.print(
        f"re-indexed {report.documents} documents, {report.chunks} chunks in {report.seconds:.1f} s: "
        f"{report.old.embedding_model} (dimension {report.old.dimension}) -> {new}; now serving {report.target}"
        + (f"; the old index is kept at {report.kept_old}" if report.kept_old else "")
    )


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Jobs run at the same time in this process.")] = 1,
) -> None:
    """Run ingest jobs from the shared queue (scale-out: run many, on many machines, against Postgres)."""
    import signal
    import threading

    from app.ingest.worker import JobWorker

    container = _container(wait=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if not container.schema.wait(stop):
        return
    report = container.ingest.recover()
    if not report.clean:
        err.print(f"repaired after an earlier stop: {report}")
    jobs = JobWorker(container.sessions, container.ingest, threads=threads, lease_s=container.settings.job_lease_s)
    jobs.start()
    err.print(f"worker running {threads} thread(s); Ctrl-C to stop after the current step")
    stop.wait()
    jobs.stop()
    container.close()


@app.command()
def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Repair what is found.")] = False,
) -> None:
    """Compare the metadata store with the chunk store and report (or --fix) differences."""
    container = _container()
    try:
        report = container.ingest.inspect()
        console.print(f"documents being deleted: {len(report.unfinished_deletes)}")
        console.print(f"chunks whose document is gone (documents): {len(report.orphan_chunk_documents)}")
        console.print(f"indexed documents missing chunks: {len(report.wrong_chunk_counts)}")
        for doc_id, (expected, found) in sorted(report.wrong_chunk_counts.items())[:20]:
            console.print(f"  {doc_id}: {found} of {expected} chunks")
        if report.clean:
            console.print("[green]consistent[/green]")
            return
        if fix:
            container.ingest.recover(report)
            console.print("[green]repaired[/green]")
            return
    finally:
        container.close()
    err.print("run `knowledge-search doctor --fix` to repair")
    raise typer.Exit(1)


@app.command("eval")
def eval_(
    dataset: Annotated[Path, typer.Argument(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the results (and per-query figures) as JSON.")
    ] = None,
    collection: Annotated[str | None, typer.Option(help="Scratch collection; default eval-<folder name>.")] = None,
    fusion: Annotated[
        list[str] | None,
        typer.Option(
            "--fusion",
            help="Hybrid fusion to compare: rrf[:K], minmax[:W], zscore[:W] (repeat). "
            "Default: each method at the configured KS_RRF_K / KS_FUSION_WEIGHT_VECTOR.",
        ),
    ] = None,
    max_queries: Annotated[int | None, typer.Option("--max-queries", min=1, help="Only the first N queries.")] = None,
    split: Annotated[str, typer.Option(help="Which qrels file: qrels/<split>.tsv.")] = "test",
) -> None:
    """Measure retrieval on a BEIR dataset: nDCG@10, Recall@10/100, MRR@10 and latency for every search mode.

    Ingests the corpus once into a scratch collection (a later run reuses it) with the configured backend and
    models, then runs each query as keyword, semantic, hybrid with each fusion, and hybrid+rerank when a
    reranker is configured.
    """
    from app.eval.dataset import DatasetError, load_beir
    from app.eval.report import ProgressBars, table
    from app.eval.runner import parse_fusion, run

    try:
        data = load_beir(dataset, split)
    except DatasetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for warning in data.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    container = _container()
    try:
        fusions = [parse_fusion(spec, container.search.fusion) for spec in fusion or []]
        with ProgressBars(err) as progress:
            report = run(
                container, data, collection=collection, fusions=fusions, max_queries=max_queries, progress=progress
            )
    except (DatasetError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        container.close()
    console.print(table(report))
    if out is not None:
        out.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        err.print(f"wrote {out}")


keys_app = typer.Typer(help="Create, list and revoke API keys (no admin key needed in a shell history).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. hr-portal.")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="read, write, admin, impersonate (repeat).")],
    principal: Annotated[list[str] | None, typer.Option("--principal", "-p", help="e.g. group:hr (repeat).")] = None,
    collection: Annotated[list[str] | None, typer.Option("--collection", "-c", help="Limit to (repeat).")] = None,
) -> None:
    """Create a key and print its secret once (to stdout, so it can go straight into a secret store)."""
    from pydantic import ValidationError

    from app.api.admin import KeyCreate, create_key

    try:
        body = KeyCreate(name=name, scopes=scope, principals=principal or [], collections=collection or None)  # type: ignore[arg-type]
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    container = _container()
    try:
        created = create_key(container, body)
    finally:
        container.close()
    err.print(f"created key {created.id} ({created.name}); the secret below is shown only once")
    print(created.key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    from app.stores.sql.repositories import ApiKeyRepository

    container = _container()
    try:
        with container.sessions() as session:
            keys = ApiKeyRepository(session).all()
    finally:
        container.close()
    table = Table("id", "name", "prefix", "scopes", "principals", "collections", "revoked")

    for k in keys:
        table.add_row(
            k.id,
            k.name,
            k.prefix,
            ",".join(k.scopes),
            ",".join(k.principals),
            ",".join(k.collections) if k.collections is not None else "*",
            "yes" if k.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")]) -> None:
    """Revoke a key: its next request gets 401."""
    from app.api.admin import revoke

    container = _container()
    try:
        revoke(container, key_id)
    except AppError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    finally:
        container.close()
    err.print(f"revoked {key_id}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    app()
