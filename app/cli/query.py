"""`search`, `ask` and `eval`: the search and chat services, and measuring them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from app.cli import app, console, err, open_container


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, semantic or keyword.")] = "hybrid",
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
) -> None:
    """Search the indexed documents."""
    from app.search.service import Mode
    from app.stores.vector.base import ChunkFilter

    if mode not in ("hybrid", "semantic", "keyword"):
        err.print("[red]error:[/red] --mode is one of hybrid, semantic, keyword")
        raise typer.Exit(2)
    container = open_container()
    try:
        outcome = container.search.search(query, ChunkFilter(collection=collection), top_k, cast(Mode, mode))
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

    container = open_container()
    try:
        answer = container.chat.ask(question, ChunkFilter(collection=collection))
    finally:
        container.close()
    console.print(answer.answer)
    for c in answer.citations:
        console.print(f"  [{c.n}] {c.title} ({c.document_id}): {c.quote[:120]}")


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
    max_queries: Annotated[
        int | None, typer.Option("--max-queries", min=1, help="Only the first N queries (and chat questions).")
    ] = None,
    split: Annotated[str, typer.Option(help="Which qrels file: qrels/<split>.tsv.")] = "test",
    chat: Annotated[
        list[Path] | None,
        typer.Option(
            "--chat",
            help="A chat question file (JSONL: question, doc_ids or answerable: false, must_contain) to ask "
            "through chat (repeat for several).",
        ),
    ] = None,
    chat_only: Annotated[
        bool, typer.Option("--chat-only", help="Skip the retrieval modes; only corpus.jsonl is then needed.")
    ] = False,
) -> None:
    """Measure retrieval on a BEIR dataset: nDCG@10, Recall@10/100, MRR@10 and latency for every search mode.

    Ingests the corpus once into a scratch collection (a later run reuses it) with the configured backend and
    models, then runs each query as keyword, semantic, hybrid with each fusion, and hybrid+rerank when a
    reranker is configured. With --chat, it then asks each question of the file(s) through chat and scores the
    answers: cited document, phrase, covered or not, latency.
    """
    from app.eval.dataset import DatasetError, load_beir
    from app.eval.report import ProgressBars, chat_table, table
    from app.eval.runner import parse_fusion, run

    if chat_only and not chat:
        err.print("[red]error:[/red] --chat-only needs at least one --chat FILE")
        raise typer.Exit(2)
    try:
        data = load_beir(dataset, split, retrieval=not chat_only)
    except DatasetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for warning in data.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    container = open_container()
    try:
        fusions = [parse_fusion(spec, container.search.fusion) for spec in fusion or []]
        with ProgressBars(err) as progress:
            report = run(
                container,
                data,
                collection=collection,
                fusions=fusions,
                max_queries=max_queries,
                progress=progress,
                chat=chat or [],
                retrieval=not chat_only,
            )
    except (DatasetError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        container.close()
    if report.results:
        console.print(table(report))
    if report.chat:
        console.print(chat_table(report))
    if out is not None:
        out.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        err.print(f"wrote {out}")
