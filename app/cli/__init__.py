"""The same services from the command line: serve, ingest, search, ask, eval, and the operator's commands.

One Typer app; each group of commands lives in its own module and registers itself here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress

from app.core.config import Settings

if TYPE_CHECKING:
    from app.container import Container
from app.core.errors import ConfigurationError
from app.core.progress import progress_bars

app = typer.Typer(help="knowledge-search: ingest, search and chat with your documents.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def bars() -> Progress:
    return progress_bars(err)


def open_container(settings: Settings | None = None) -> Container:
    from app.container import build_container

    try:
        return build_container(settings or Settings())
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def main() -> None:
    app()


# Each module adds its commands to ``app`` when imported.
from app.cli import serve, ingest, query, operate  # noqa: E402, F401, I001  (the order of --help)
