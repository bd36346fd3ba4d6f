"""`ingest` (folders and files, or an S3 prefix) and `sources` (the S3 sources an admin registers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli import app, bars, console, err, open_container
from app.core.errors import AppError

if TYPE_CHECKING:
    from app.container import Container


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
    container = open_container()
    try:
        failed = ingest_paths(container, local, collection, meta, workers) if local else 0
        if s3_uris:
            failed += _sync_s3(container, s3_uris, collection)
    finally:
        container.close()
    raise typer.Exit(1 if failed else 0)


def _sync_s3(container: Container, uris: list[str], collection: str) -> int:
    """Sync each s3://bucket/prefix into the collection, through the source registered for exactly that place
    (registered now if there is none: whoever runs the CLI holds the database settings, so acts as an admin).
    Returns how many objects (or whole syncs) failed."""
    from rich.markup import escape

    from app.access.caller import SYSTEM

    sources = []
    for uri in uris:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        found = container.sources.find(bucket=bucket, prefix=prefix, collection=collection)
        if found is None:
            try:
                _check_bucket(bucket)
                found = container.sources.register(
                    SYSTEM,
                    name=_source_name(bucket, prefix, collection),
                    bucket=bucket,
                    prefix=prefix,
                    collection=collection,
                    acl=None,
                )
            except (AppError, ValueError) as exc:
                err.print(
                    f"[red]error:[/red] {escape(uri)}: {escape(getattr(exc, 'detail', str(exc)))}", soft_wrap=True
                )
                raise typer.Exit(2) from exc
        sources.append(found)
    try:
        service = container.s3_sync()  # one boto3 client for every prefix
    except AppError as exc:
        err.print(f"[red]error:[/red] {escape(exc.detail)}", soft_wrap=True)
        raise typer.Exit(2) from exc
    return sum(_run_sync(service, source, uri) for uri, source in zip(uris, sources, strict=True))


def _run_sync(service: Any, source: Any, uri: str) -> int:
    from rich.markup import escape

    with bars() as progress:
        task = progress.add_task(f"{escape(uri)} (listing)", total=None)

        def advance(done: int, total: int, report: Any) -> None:
            status = f"{report.new} new, {report.modified} modified, {report.failed} failed"
            progress.update(task, completed=done, total=total, description=f"{escape(uri)} ({status})")

        try:
            report = service.sync(source, advance)
        except AppError as exc:
            err.print(f"[red]error:[/red] {escape(uri)}: {escape(exc.detail)}", soft_wrap=True)
            return 1
    for line in report.errors:
        err.print(f"[red]failed[/red] {escape(line)}", soft_wrap=True)
    console.print(f"{report.line()} ({uri} -> collection '{source.collection}')", markup=False, soft_wrap=True)
    return int(report.failed)


def _check_bucket(bucket: str) -> None:
    from pydantic import ValidationError

    from app.api.schemas import SourceCreate

    try:
        SourceCreate(name="check", bucket=bucket)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from exc


def _source_name(bucket: str, prefix: str, collection: str) -> str:
    import hashlib
    import re

    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{bucket}-{prefix}".strip("/-"))[:100].strip("-.") or "s3"
    return f"{readable}-{hashlib.sha256(f'{bucket}/{prefix}>{collection}'.encode()).hexdigest()[:8]}"


def ingest_paths(container: Container, paths: list[Path], collection: str, meta: dict[str, Any], workers: int) -> int:
    """Index a folder tree (app.ingest.sources.folder) with progress bars; returns how many files failed."""
    from rich.markup import escape

    from app.ingest.sources.folder import FolderIngest, FolderProgress, find_files

    with bars() as progress:

        class Bars(FolderProgress):
            def indexing(self, total: int) -> None:
                self.files = progress.add_task("files", total=total)
                self.chunk_bar = progress.add_task("chunks", total=None)

            def chunks(self, done: int, total: int) -> None:
                progress.update(self.chunk_bar, completed=done, total=total)

            def finished(self, path: Path, error: str | None) -> None:
                if error is not None:
                    err.print(f"[red]failed[/red] {escape(str(path))}: {escape(error)}", soft_wrap=True)
                progress.update(self.files, advance=1, description=f"files ({path.name[:40]})")

        report = FolderIngest(container.ingest, workers=workers).run(find_files(paths), collection, meta, Bars())
    err.print(report.line(collection))
    return report.failed


sources_app = typer.Typer(help="S3 sources: where syncs may read, into which collection, readable by whom.")
app.add_typer(sources_app, name="sources")


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="The source's name, e.g. hr-handbooks.")],
    uri: Annotated[str, typer.Argument(help="s3://bucket/prefix")],
    collection: Annotated[str, typer.Option(help="Collection its documents go to.")] = "default",
    acl: Annotated[list[str] | None, typer.Option("--acl", help="A principal allowed to read (repeat).")] = None,
) -> None:
    """Register a source (the same as POST /v1/sources with an admin key)."""
    from app.access.caller import SYSTEM

    if not uri.startswith("s3://"):
        err.print("[red]error:[/red] the source is an s3://bucket/prefix URI")
        raise typer.Exit(2)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    container = open_container()
    try:
        _check_bucket(bucket)
        source = container.sources.register(
            SYSTEM, name=name, bucket=bucket, prefix=prefix, collection=collection, acl=acl or None
        )
    except (AppError, ValueError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'detail', str(exc))}")
        raise typer.Exit(2) from exc
    finally:
        container.close()
    err.print(f"registered source {source.name}: {uri} -> collection '{source.collection}'")


@sources_app.command("list")
def sources_list() -> None:
    """The registered sources."""
    from rich.table import Table

    from app.access.caller import SYSTEM

    container = open_container()
    try:
        found = container.sources.all(SYSTEM)
    finally:
        container.close()
    table = Table("name", "uri", "collection", "acl")
    for s in found:
        table.add_row(s.name, f"s3://{s.bucket}/{s.prefix}", s.collection, ",".join(s.acl or []) or "(collection)")
    console.print(table)


@sources_app.command("sync")
def sources_sync(name: Annotated[str, typer.Argument(help="A registered source.")]) -> None:
    """Sync a registered source now, with a progress bar; prints the counts (exit 1 when anything failed)."""
    from app.access.caller import SYSTEM

    container = open_container()
    try:
        try:
            source = container.sources.get(SYSTEM, name)
            service = container.s3_sync()
        except AppError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        failed = _run_sync(service, source, f"s3://{source.bucket}/{source.prefix}")
    finally:
        container.close()
    raise typer.Exit(1 if failed else 0)


@sources_app.command("remove")
def sources_remove(
    name: Annotated[str, typer.Argument(help="A registered source.")],
    keep_documents: Annotated[bool, typer.Option("--keep-documents", help="Keep what it brought in.")] = False,
) -> None:
    """Remove a source, and (unless --keep-documents) the documents it brought in."""
    from app.access.caller import SYSTEM

    container = open_container()
    try:
        source = container.sources.remove(SYSTEM, name)
        removed = 0 if keep_documents else container.ingest.delete_origin(source.origin)
    except AppError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from exc
    finally:
        container.close()
    err.print(f"removed source {name}" + ("" if keep_documents else f" and its {removed} documents"))
