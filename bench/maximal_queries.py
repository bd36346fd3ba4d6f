"""What the longest requests cost, and whether one key's long requests make another key wait: against a real
`knowledge-search serve` with the sample corpus and two API keys.

    .venv/bin/python -m bench.maximal_queries                   # this checkout
    .venv/bin/python -m bench.maximal_queries --code-dir DIR    # the server from another checkout (`git archive`)

Every request is new (a number in front), so the query cache answers none of them.

1. Alone: the median time of each request below (``--repeat`` of each, one at a time), from key A.
2. Under a flood: key A keeps four maximal chats in flight (4,000 characters each, as in the report of issue 12);
   key B sends a plain search every half second; the times of B's searches and of A's chats are printed.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import load_average, machine_line, start_server

ADMIN = "bench-admin-key"
LONG_TEXT = " ".join(f"Paragraph {i} of the pasted incident report mentions server rack {i * 7}." for i in range(60))
REQUESTS = {
    "plain search (hybrid)": ("/v1/search", {"query": "How many days of paid leave?"}),
    "search: 2,000 emoji": ("/v1/search", {"query": "😀" * 2_000}),
    "search: 2,000 characters of words": ("/v1/search", {"query": LONG_TEXT[:2_000]}),
    "search: 2,000 Japanese characters": (
        "/v1/search",
        {"query": ("有給休暇の申請は三日前までに上長へ提出してください。" * 80)[:2_000]},
    ),
    "chat: 4,000 characters": ("/v1/chat", {"message": LONG_TEXT[:3_950] + " How many days of paid leave?"}),
}


def _serve(data_dir: Path, code_dir: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        "KS_DATA_DIR": str(data_dir),
        "KS_ADMIN_KEY": ADMIN,
        "KS_RATE_LIMIT_PER_MINUTE": "0",
        "KS_LOG_FORMAT": "text",
    }
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir)
    return start_server(env, timeout_s=300, args=["--sample"])


def _key(url: str, name: str) -> httpx.Client:
    r = httpx.post(
        f"{url}/v1/keys", json={"name": name, "scopes": ["read"]}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    r.raise_for_status()
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {r.json()['key']}"}, timeout=600)


_SEQ = itertools.count()


def _fresh(body: dict[str, object]) -> dict[str, object]:
    """The same request, with a number in front and as long as before: never a repeat, so the query cache
    cannot answer it."""
    field = "query" if "query" in body else "message"
    text = str(body[field])
    return {**body, field: f"{next(_SEQ)} {text}"[: len(text)]}


def _timed(client: httpx.Client, path: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    r = client.post(path, json=_fresh(body))
    r.raise_for_status()
    return time.perf_counter() - started


def alone(a: httpx.Client, repeat: int) -> None:
    print(f"\n1. One request at a time (median of {repeat}), load {load_average()}")
    print("| request | median s | max s |")
    print("|---|---|---|")
    for label, (path, body) in REQUESTS.items():
        _timed(a, path, body)  # warm
        times = [_timed(a, path, body) for _ in range(repeat)]
        print(f"| {label} | {statistics.median(times):.2f} | {max(times):.2f} |", flush=True)


def flood(a: httpx.Client, b: httpx.Client, flooders: int, samples: int) -> None:
    print(f"\n2. Key A keeps {flooders} maximal chats in flight; key B searches, load {load_average()}")
    stop, chats = threading.Event(), []
    path, body = REQUESTS["chat: 4,000 characters"]

    def keep_chatting() -> None:
        while not stop.is_set():
            chats.append(_timed(a, path, body))

    threads = [threading.Thread(target=keep_chatting, daemon=True) for _ in range(flooders)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # the flood is in
    searches = []
    for _ in range(samples):
        searches.append(_timed(b, "/v1/search", {"query": "How many days of paid leave?"}))
        time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    print("| | n | median s | max s |")
    print("|---|---|---|---|")
    print(f"| key B's plain search | {len(searches)} | {statistics.median(searches):.2f} | {max(searches):.2f} |")
    print(f"| key A's maximal chat | {len(chats)} | {statistics.median(chats):.2f} | {max(chats):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code-dir", type=Path, help="run the server from this checkout (PYTHONPATH)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--flooders", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8, help="key B's searches during the flood")
    args = ap.parse_args()
    print(f"# {machine_line()}; code {args.code_dir or 'this checkout'}")
    with tempfile.TemporaryDirectory(prefix="ks-maximal-") as tmp:
        server, url = _serve(Path(tmp) / "data", args.code_dir)
        try:
            a, b = _key(url, "key-a"), _key(url, "key-b")
            alone(a, args.repeat)
            flood(a, b, args.flooders, args.samples)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


if __name__ == "__main__":
    main()
