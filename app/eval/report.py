"""How the eval command shows its work: progress bars while it runs, a table of the results at the end."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from app.core.progress import progress_bars
from app.eval.runner import METRICS, EvalReport


class ProgressBars:
    """A ``runner.Progress`` callback that draws one bar per stage (ingest, queries)."""

    def __init__(self, console: Console) -> None:
        self._progress = progress_bars(console)
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


def table(report: EvalReport) -> Table:
    ingest = report.ingest
    how = (
        "reused"
        if ingest.reused
        else f"{ingest.indexed} indexed, {ingest.unchanged} unchanged, {ingest.failed} failed in {ingest.seconds:.0f} s"
    )
    out = Table(
        title=f"{report.dataset.name}: {report.queries} queries, {len(report.dataset.corpus)} documents "
        f"({report.backend}, {report.embedding_model})",
        caption=f"collection {ingest.collection}: {how}; * = the configured fusion (KS_FUSION)",
    )
    out.add_column("mode", no_wrap=True)
    for header in ("nDCG@10", "R@10", "R@100", "MRR@10", "p50 ms", "p95 ms"):
        out.add_column(header, justify="right")
    best = {m: max(r.metrics[m] for r in report.results) for m in METRICS}
    for r in report.results:
        cells = [
            f"[bold]{r.metrics[m]:.3f}[/bold]" if r.metrics[m] == best[m] else f"{r.metrics[m]:.3f}" for m in METRICS
        ]
        out.add_row(r.spec.label + (" *" if r.spec.default else ""), *cells, f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}")
    return out
