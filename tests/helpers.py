from __future__ import annotations

from typing import Any

PROBLEM = "application/problem+json"


def upload_text(
    client, text: str, *, title: str | None = None, collection: str = "default", metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text, "collection": collection, "metadata": metadata or {}}
    if title:
        body["title"] = title
    r = client.post("/v1/documents", json=body)
    assert r.status_code == 201, r.text
    return r.json()


SAMPLE_FILES = [
    "leave-policy.md",
    "expense-policy.md",
    "security-guidelines.txt",
    "remote-work.html",
    "ja-leave-policy.md",
    "ja-remote-work.html",
]


def upload_file(client, name: str, *, collection: str = "default") -> dict[str, Any]:
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "app" / "samples" / name
    r = client.post("/v1/documents", files={"file": (name, path.read_bytes())}, data={"collection": collection})
    assert r.status_code == 201, r.text
    return r.json()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a Server-Sent Events body."""
    import json

    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line and not line.startswith(":"))
        if "event" in fields and "data" in fields:
            events.append((fields["event"].strip(), json.loads(fields["data"].strip())))
    return events
