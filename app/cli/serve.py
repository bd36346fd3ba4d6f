"""`serve`: the REST API (and the sample corpus with --sample)."""

from __future__ import annotations

import ipaddress
import logging
import os
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli import app, err, open_container
from app.cli.ingest import ingest_paths
from app.core.config import Settings


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

    # The local model's OpenMP threads sleep while they wait instead of spinning: chosen for a server under
    # concurrency, and for a host whose cores something else also uses (docs/benchmarks.md, "Load test A/B"). Set
    # before the model's library loads, which reads it once; an operator's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    if settings.admin_key is None and not is_loopback(host):
        err.print(
            f"[red]error:[/red] refusing to serve on {host} without an API key. Set KS_ADMIN_KEY, "
            "or serve on 127.0.0.1."
        )
        raise typer.Exit(2)
    if settings.admin_key is None:
        logging.getLogger("app").warning("KS_ADMIN_KEY is not set: serving without authentication on loopback only")
        err.print("[yellow]warning:[/yellow] KS_ADMIN_KEY is not set: no authentication (loopback only)")
    container = open_container(settings, wait=True)
    warn_if_not_migrated(container)
    if sample:
        ingest_paths(container, [Path(str(files("app") / "samples"))], "samples", {}, workers=2)
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


def warn_if_not_migrated(container: Any) -> None:
    """Say at start when the database needs `migrate`; the service still starts and answers 503 until it ran."""
    from app.core.errors import AppError

    try:
        container.schema.check()
    except AppError as exc:
        logging.getLogger("app").warning("%s; until then /readyz and the API answer 503", exc.detail)
        err.print(f"[yellow]warning:[/yellow] {exc.detail}; until then /readyz and the API answer 503")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
