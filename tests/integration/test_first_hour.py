"""docs/first-hour.md's curl block, run as a reader would paste it, against a real `serve --sample` process."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from tests.integration.test_process import Server

pytestmark = pytest.mark.process
DOC = Path(__file__).resolve().parents[2] / "docs" / "first-hour.md"
KEY = "first-hour-admin-key"


def _tested_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    marker = text.index("<!-- first-hour: the block below is run by")
    block = re.search(r"```bash\n(.*?)```", text[marker:], re.S)
    assert block, "the marked block is missing"
    return block.group(1)


def test_every_curl_of_the_first_hour_works(tmp_path: Path) -> None:
    server = Server(Settings(data_dir=tmp_path / "data"), "--sample", KS_ADMIN_KEY=KEY)
    try:
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _tested_block()],
            cwd=tmp_path,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "KS": server.url, "KS_ADMIN_KEY": KEY},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        out = run.stdout
        assert out.count('"status":"ok"') >= 2  # healthz, readyz
        assert "level B2" in out and "level B3" in out  # chunks before, search after the replacement
        assert "10 days" in out  # the chat answer from the sample corpus
        assert "event: done" in out  # the streamed answer
        assert '"name":"search"' in out  # MCP tools/list
        assert "ks_http_requests_total" in out
        # every endpoint of the schema is called at least once, the S3 ones aside (shown without running)
        called = _calls(server.log)
        schema = httpx.get(f"{server.url}/openapi.json").json()["paths"]
        # (probes are logged at DEBUG, so /healthz and /readyz are checked by their output above)
        skipped = ("/v1/sources", "/healthz", "/readyz")
        expected = {(m.upper(), p) for p, ops in schema.items() for m in ops if not p.startswith(skipped)}
        assert expected <= called, sorted(expected - called)
    finally:
        server.stop()


def _calls(log: Path) -> set[tuple[str, str]]:
    """(method, route template) of every request the service logged, from its JSON access lines."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return {(x["method"], x["route"]) for x in lines if x.get("logger") == "app.http"}
