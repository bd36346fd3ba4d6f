"""The local model's query throughput under each OpenMP setting: threads 1 or 2, waiting actively or passively.

    .venv/bin/python -m bench.model_threads [--sizes 1 8] [--seconds 6]

Each setting runs in a fresh process (OpenMP reads its settings once, when the engine loads), on distinct
sentences of the load test's documents. Run it beside a load (another process using the cores) to see what a
server's other requests do to each setting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SETTINGS = [("2", "ACTIVE"), ("2", "PASSIVE"), ("1", "ACTIVE"), ("1", "PASSIVE")]


def probe(sizes: list[int], seconds: float) -> None:
    from app.providers.local import E5Embedder
    from bench.load_ab import sentence_pool

    queries = sentence_pool(400)
    model = E5Embedder()
    model.embed_queries(queries[:8])
    for size in sizes:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            at = done % (len(queries) - size)
            model.embed_queries(queries[at : at + size])
            done += size
        print(f"{size} {done / (time.perf_counter() - started):.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        probe(args.sizes, args.seconds)
        return
    print("| OMP_NUM_THREADS | OMP_WAIT_POLICY | " + " | ".join(f"batch {s} q/s" for s in args.sizes) + " | load |")
    print("|---|---|" + "---|" * len(args.sizes) + "---|")
    for threads, policy in SETTINGS:
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": policy}
        out = subprocess.run(
            [sys.executable, "-m", "bench.model_threads", "--probe", "--seconds", str(args.seconds), "--sizes"]
            + [str(s) for s in args.sizes],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        rates = dict(line.split() for line in out if line.strip())
        load = os.getloadavg()[0]
        print(f"| {threads} | {policy.lower()} | " + " | ".join(rates[str(s)] for s in args.sizes) + f" | {load:.1f} |")


if __name__ == "__main__":
    main()
