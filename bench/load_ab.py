"""Load test A/B: two builds of the service (e.g. the base commit and this one) served side by side on copies of
the same index, taking turns level by level, with distinct queries (no query is sent twice to a server, so a
cache cannot flatter a number), then a repeated-query run, then the model's own batched throughput.

    git worktree add --detach ../base BASE && python3.11 -m venv ../base/.venv && ../base/.venv/bin/pip install -e ../base
    .venv/bin/python -m bench.load --build --quick-vectors          # once: the 10k-chunk index
    .venv/bin/python -m bench.load_ab --base ../base [--levels 1 8 32] [--repeat-level 8]
    eval "$(scripts/services up)"; .venv/bin/python -m bench.load_ab --base ../base --backend opensearch

A server is ``label=path`` (a checkout whose .venv has it installed) with optional ``,ENV=value`` settings:
``--server new=.`` is this checkout; ``--server omp1=.,OMP_NUM_THREADS=1`` the same code with one OpenMP thread.
Per level the servers run in turn, the first of the pair alternating from level to level. Queries: sentences of
the indexed documents (20 to 200 characters), each used once per server; a level gets its own slice. The
repeated-query run sends the same 50 queries over and over. The ceiling is the local model embedding batches
of distinct queries in this process (both cores its own), at batch sizes 1 to 16; the servers' own batch size
comes from their /metrics (``ks_embedding_batch_size``; the base commit has no such metric: batch 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import load_average, machine_line, start_server
from bench.corpus import docstring_documents
from bench.load import DATA, OUT, copy_to_opensearch, run_level, server_env

AB = OUT / "load-ab"


def sentence_pool(count: int) -> list[str]:
    """Distinct sentences of the indexed documents, interleaved across documents (not 50 of one module)."""
    per_doc: list[list[str]] = []
    for _, text in docstring_documents(include_site_packages=True):
        body = re.sub(r"^#.*$", "", text, flags=re.MULTILINE)
        sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s", body)]
        per_doc.append([s for s in sentences if 20 <= len(s) <= 200 and "\x00" not in s])
        if len(per_doc) >= 471:  # the documents of the 10k-chunk index
            break
    seen: dict[str, None] = {}
    for i in range(max(len(d) for d in per_doc)):
        for d in per_doc:
            if i < len(d):
                seen.setdefault(d[i], None)
                if len(seen) == count:
                    return list(seen)
    return list(seen)


def parse_server(spec: str, base: Path | None) -> tuple[str, Path, dict[str, str]]:
    label, _, rest = spec.partition("=")
    path, *settings = rest.split(",")
    root = base if path == "base" and base else Path(path)
    env = dict(s.split("=", 1) for s in settings)
    return label, root.resolve(), env


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the server's query batch sizes so far, from /metrics (0, 0 without the metric)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = re.search(r'ks_embedding_batch_size_sum\{kind="query"\} ([0-9.e+]+)', text)
    count = re.search(r'ks_embedding_batch_size_count\{kind="query"\} ([0-9.e+]+)', text)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def model_ceiling(queries: list[str], sizes: list[int], seconds: float = 8.0) -> dict[int, float]:
    """Queries/s of the local model alone at each batch size (distinct queries, one call per batch)."""
    from app.providers.local import E5Embedder

    model = E5Embedder()
    model.embed_queries(queries[:8])  # warm-up
    out: dict[int, float] = {}
    for size in sizes:
        done, at, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model.embed_queries(queries[at : at + size])
            done, at = done + size, (at + size) % max(len(queries) - size, 1)
        out[size] = done / (time.perf_counter() - started)
        print(f"  model alone, batches of {size}: {out[size]:.1f} queries/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, help="checkout of the base commit (with its own .venv)")
    ap.add_argument("--server", action="append", help="label=path[,ENV=value...]; default base=base, new=.")
    ap.add_argument("--backend", choices=["embedded", "opensearch"], default="embedded")
    ap.add_argument("--endpoints", nargs="+", choices=["search", "chat"], default=["search"])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=300, help="requests per level and server")
    ap.add_argument("--time-cap", type=float, default=40.0)
    ap.add_argument("--repeat-level", type=int, default=8, help="concurrency of the repeated-query run; 0: none")
    ap.add_argument("--ceiling-sizes", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority of the servers and this client (-10: ahead of "
        "other work on a shared machine; needs root)",
    )
    args = ap.parse_args()
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    specs = [parse_server(s, args.base) for s in (args.server or ["base=base", "new=."])]
    if args.backend == "opensearch":
        copy_to_opensearch()
    slices = len(args.levels) * len(args.endpoints) + 1
    pool = sentence_pool(slices * (args.requests + 5))
    assert len(pool) >= slices * (args.requests + 5), f"only {len(pool)} distinct sentences"
    print(machine_line(), flush=True)
    print(f"servers: {[(label, str(root), env) for label, root, env in specs]}, nice {args.nice}", flush=True)

    servers: dict[str, tuple[Any, str, int]] = {}
    try:
        for label, root, extra in specs:
            data = AB / label
            shutil.rmtree(data, ignore_errors=True)
            shutil.copytree(DATA, data)  # each server its own copy: its own audit rows and conversations
            env = {**server_env(args.backend), "KS_DATA_DIR": str(data), **extra}
            proc, url = start_server(env, executable=root / ".venv" / "bin" / "knowledge-search", nice=args.nice)
            servers[label] = (proc, url, proc.pid)
        rows: list[dict[str, Any]] = []
        turn = 0
        for endpoint in args.endpoints:
            path = "/v1/search" if endpoint == "search" else "/v1/chat"
            for level in args.levels:
                queries = pool[turn * (args.requests + 5) : (turn + 1) * (args.requests + 5)]
                bodies = [_body(endpoint, q) for q in queries]
                order = list(servers) if turn % 2 == 0 else list(reversed(servers))
                turn += 1
                for label in order:
                    rows.append(_run(label, servers[label], path, bodies, level, args, f"{endpoint}"))
        if args.repeat_level:
            fifty = pool[-50:]
            for label in servers:
                bodies = [_body("search", q) for q in fifty]
                rows.append(
                    _run(label, servers[label], "/v1/search", bodies, args.repeat_level, args, "search, 50 repeated")
                )
    finally:
        for proc, _, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    ceiling = model_ceiling(pool[: 16 * 40], args.ceiling_sizes) if args.ceiling_sizes else {}
    _report(rows, ceiling, args, [label for label, _, _ in specs])


def _body(endpoint: str, query: str) -> dict[str, Any]:
    if endpoint == "search":
        return {"query": query, "top_k": 10, "mode": "hybrid"}
    return {"message": query, "stream": False}


def _run(
    label: str,
    server: tuple[Any, str, int],
    path: str,
    bodies: list[dict[str, Any]],
    level: int,
    args: argparse.Namespace,
    what: str,
) -> dict[str, Any]:
    _, url, pid = server
    load = load_average()
    before = batch_stats(url)
    r = asyncio.run(run_level(url, path, bodies, level, args.requests, args.time_cap, pid))
    after = batch_stats(url)
    n = after[1] - before[1]
    r.update(
        server=label,
        what=what,
        concurrency=level,
        load_before=load,
        load_after=load_average(),
        batch=(after[0] - before[0]) / n if n else 1.0,
    )
    print(
        f"  {label:>6} {what} c={level}: {r['requests']} req, {r['errors']} errors, {r['rps']:.1f} rps, p50 "
        f"{r['p50']:.0f} p95 {r['p95']:.0f} p99 {r['p99']:.0f} ms, CPU {r['cpu_pct']:.0f}%, batch {r['batch']:.1f}, "
        f"load {load}",
        flush=True,
    )
    return r


def _report(rows: list[dict[str, Any]], ceiling: dict[int, float], args: argparse.Namespace, labels: list[str]) -> None:
    print(f"\nbackend {args.backend}; distinct queries unless marked repeated")
    print(
        "| run | concurrency | server | requests | errors | rps | p50 ms | p95 ms | p99 ms | server CPU | CPU ms/request"
        " | query batch | load before → after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        cpu_ms = r["cpu_pct"] * 10 / r["rps"] if r["rps"] else float("nan")
        print(
            f"| {r['what']} | {r['concurrency']} | {r['server']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} "
            f"| {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['cpu_pct']:.0f}% | {cpu_ms:.1f} "
            f"| {r['batch']:.1f} | {r['load_before']} → {r['load_after']} |"
        )
    if len(labels) >= 2:
        a, b = labels[0], labels[-1]
        print(f"\npaired ratios {b} / {a}:")
        for what, level in dict.fromkeys((r["what"], r["concurrency"]) for r in rows):
            pair = {r["server"]: r for r in rows if r["what"] == what and r["concurrency"] == level}
            if a in pair and b in pair:
                print(
                    f"  {what} c={level}: rps ×{pair[b]['rps'] / pair[a]['rps']:.2f}, "
                    f"p99 {pair[a]['p99']:.0f} → {pair[b]['p99']:.0f} ms"
                )
    if ceiling:
        print("\nmodel alone: " + ", ".join(f"batch {k}: {v:.1f} q/s" for k, v in ceiling.items()))
        for r in rows:
            if r["concurrency"] == 8 and "repeated" not in r["what"]:
                size = min(ceiling, key=lambda k: abs(k - r["batch"]))
                print(
                    f"  {r['server']} {r['what']} c=8: {r['rps']:.1f} rps at batch {r['batch']:.1f} = "
                    f"{100 * r['rps'] / ceiling[size]:.0f}% of the model's {ceiling[size]:.1f} q/s at batch {size}"
                )
    print(f"median load during the run: {statistics.median(float(r['load_before'].split()[0]) for r in rows):.2f}")


if __name__ == "__main__":
    main()
