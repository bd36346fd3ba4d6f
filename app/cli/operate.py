"""The operator's commands: migrate, reindex, worker, doctor, keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli import app, bars, console, err, open_container
from app.core.config import Settings
from app.core.errors import AppError, ConfigurationError


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
    with bars() as progress:
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

    container = open_container(wait=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if not container.schema.wait(stop):  # not migrated yet: wait for it (or for Ctrl-C)
        container.close()
        return
    report = container.ingest.recover()
    if not report.clean:
        err.print(f"repaired after an earlier stop: {report}")
    jobs = JobWorker(container.ingest, threads=threads)
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
    container = open_container()
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


keys_app = typer.Typer(help="Create, list and revoke API keys (no admin key needed in a shell history).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. hr-portal.")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="read, write, sync, admin, impersonate (repeat).")],
    principal: Annotated[list[str] | None, typer.Option("--principal", "-p", help="e.g. group:hr (repeat).")] = None,
    collection: Annotated[list[str] | None, typer.Option("--collection", "-c", help="Limit to (repeat).")] = None,
) -> None:
    """Create a key and print its secret once (to stdout, so it can go straight into a secret store)."""
    container = open_container()
    try:
        new = container.keys.create(name, scope, principal or [], collection or None)
    except AppError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    finally:
        container.close()
    err.print(f"created key {new.key.id} ({new.key.name}); the secret below is shown only once")
    print(new.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    container = open_container()
    try:
        keys = container.keys.all()
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
    container = open_container()
    try:
        container.keys.revoke(key_id)
    except AppError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    finally:
        container.close()
    err.print(f"revoked {key_id}")
