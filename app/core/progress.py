"""The progress bars of every long command (ingest, sync, re-index, eval): one look, defined once."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bars(console: Console) -> Progress:
    """Description, bar, done/total, elapsed time; drawn on ``console`` (stderr, so stdout stays for results)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
