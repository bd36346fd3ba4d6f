"""Memory of parsing and chunking a large text file whole (as uploads were handled before streaming) against part by
part (as they are now), each in a fresh process, nothing embedded or stored.

    .venv/bin/python -m bench.parse_memory [FILE] [--chunk-size 8000 --chunk-overlap 400]

FILE defaults to the 200 MB text `bench.large_ingest` writes (bench/out/large/text-200mb.txt).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "out" / "large" / "text-200mb.txt"


def _measure(mode: str, path: Path, size: int, overlap: int) -> dict[str, float]:
    from app.ingest.chunking import chunk_document
    from app.ingest.parsers import parse, parse_parts
    from app.ingest.payload import Payload

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, chunks = time.perf_counter(), 0
    if mode == "whole":
        chunks = len(chunk_document(parse(path.read_bytes(), "text/plain"), size, overlap))
    else:
        for part, _ in parse_parts(Payload.of_file(path, hash_it=False), "text/plain"):
            chunks += len(chunk_document(part, size, overlap))
    return {
        "chunks": chunks,
        "seconds": time.perf_counter() - started,
        "baseline_mb": baseline,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--chunk-size", type=int, default=8000)
    ap.add_argument("--chunk-overlap", type=int, default=400)
    ap.add_argument("--mode", choices=("whole", "parts"), help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(_measure(args.mode, args.file, args.chunk_size, args.chunk_overlap)))
        return
    if not args.file.exists():
        raise SystemExit(f"{args.file} is missing: run `python -m bench.large_ingest` once, or name a file")
    print(f"{args.file} ({args.file.stat().st_size / (1 << 20):.0f} MiB), chunk size {args.chunk_size}")
    print("| parsed | chunks | time | process before | peak RSS |")
    print("|---|---|---|---|---|")
    for mode, label in (("whole", "whole file (before)"), ("parts", "part by part (now)")):
        out = subprocess.run(
            [sys.executable, "-m", "bench.parse_memory", str(args.file), "--mode", mode,
             "--chunk-size", str(args.chunk_size), "--chunk-overlap", str(args.chunk_overlap)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {label} | {r['chunks']:,} | {r['seconds']:.0f} s | {r['baseline_mb']:.0f} MiB | {r['peak_mb']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
