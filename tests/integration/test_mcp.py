"""An AI agent at /mcp: the official MCP client SDK against a real `knowledge-search serve` process, both backends.

Tools are listed, search finds passages, access lists and key collections hold for every tool, impersonation
works as in REST, a write-only key may not read, strangers get 401 before MCP is reached, and the calls are
audited and rate limited together with the key's REST calls.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from app.core.config import Settings
from tests.conftest import _drop_indices, _truncate
from tests.helpers import PROBLEM
from tests.integration.test_process import Server

pytestmark = pytest.mark.process
ADMIN = "mcp-test-admin-key"
TOOLS = {"search", "read_document", "list_documents", "ask"}
# three sections of about 500 characters: three chunks at the default chunk size
VISITOR_GUIDE = "\n\n".join(
    f"# {title}\n\n" + (f"{line} " * 12).strip()
    for title, line in [
        ("Arrival", "Visitors sign in at the front desk of the north building."),
        ("Badges", "Every visitor wears a red badge that the host returns at the end of the day."),
        ("Wi-Fi", "The guest network is called KS-Guest and needs no password on weekdays."),
    ]
)
_T = TypeVar("_T")


@dataclass
class Service:
    server: Server
    docs: dict[str, str]  # name -> document id
    keys: dict[str, tuple[str, str]]  # name -> (secret, key id)

    @property
    def mcp(self) -> str:
        return f"{self.server.url}/mcp"


def _settings(backend: str, data: Path, request: pytest.FixtureRequest) -> tuple[Settings, Callable[[], None]]:
    if backend == "embedded":
        return Settings(data_dir=data), lambda: None
    pg = request.getfixturevalue("migrated_postgres")
    os_url = request.getfixturevalue("opensearch_url")
    index = f"ks-test-{uuid.uuid4().hex[:10]}"
    _truncate(pg)
    settings = Settings(
        data_dir=data, database_url=pg, vector_store="opensearch", opensearch_url=os_url, opensearch_index=index
    )
    return settings, lambda: _drop_indices(os_url, index)


@pytest.fixture(scope="module", params=["embedded", "production"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings, cleanup = _settings(request.param, tmp_path_factory.mktemp(f"mcp-{request.param}") / "data", request)
    server = Server(settings, KS_ADMIN_KEY=ADMIN)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60) as admin:

            def upload(title: str, text: str, collection: str, acl: list[str] | None = None) -> str:
                body = {"title": title, "text": text, "collection": collection, "acl": acl or []}
                reply = admin.post("/v1/documents", json=body)
                assert reply.status_code == 201, reply.text
                return str(reply.json()["id"])

            def key(name: str, **body: Any) -> tuple[str, str]:
                reply = admin.post("/v1/keys", json={"name": name, **body})
                assert reply.status_code == 201, reply.text
                return reply.json()["key"], reply.json()["id"]

            docs = {
                "parking": upload("Parking", "Visitors park on level B2 of the north garage.", "handbook"),
                "salaries": upload(
                    "Salary review",
                    "The salary review happens every April; the bonus pool is three percent of payroll.",
                    "handbook",
                    acl=["group:hr"],
                ),
                "expenses": upload("Expenses", "Expense claims are filed within 30 days of the trip.", "finance"),
                "guide": upload("Visitor guide", VISITOR_GUIDE, "handbook"),
            }
            keys = {
                "reader": key("agent", scopes=["read"], principals=["user:alice"], collections=["handbook"]),
                "writer": key("uploader", scopes=["write"], principals=["user:alice"]),
                "portal": key("hr-portal", scopes=["read", "impersonate"], principals=["service:portal"]),
            }
        yield Service(server, docs, keys)
    finally:
        server.stop()
        cleanup()


@asynccontextmanager
async def agent(url: str, key: str | None, statuses: list[int] | None = None, **headers: str) -> AsyncIterator[Client]:
    """An MCP client as an agent configures one: the server's URL and an Authorization header. ``statuses``
    collects the HTTP status of every reply (the SDK reports a refusal only as an MCP error)."""
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async with (
        httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"response": [record]}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def run(fn: Callable[[], Awaitable[_T]]) -> _T:
    return anyio.run(fn)


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    """The tool's structured result; fails the test if the tool reported an error."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    # the same result as text, for agents that read only text content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return str(result.content[0].text)


def test_tools_are_listed_with_their_arguments(service: Service) -> None:
    async def go() -> None:
        async with agent(service.mcp, service.keys["reader"][0]) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        assert tools["search"].input_schema["required"] == ["query"]
        assert {"query", "collection", "filters", "top_k", "mode"} <= set(tools["search"].input_schema["properties"])
        assert tools["ask"].input_schema["required"] == ["question"]
        for tool in tools.values():
            assert tool.description and tool.annotations.read_only_hint, tool.name
            assert tool.output_schema is not None, tool.name  # structured results

    run(go)


def test_search_finds_passages_with_their_source(service: Service) -> None:
    async def go() -> Any:
        async with agent(service.mcp, service.keys["reader"][0]) as client:
            return await call(client, "search", query="where do visitors park", top_k=3)

    hits = run(go)["results"]
    top = hits[0]
    assert top["document_id"] == service.docs["parking"] and top["title"] == "Parking"
    assert "B2" in top["text"] and isinstance(top["score"], float)
    assert top["source"]["char_end"] > top["source"]["char_start"] >= 0


def test_read_document_and_list_documents(service: Service) -> None:
    async def go() -> tuple[Any, Any]:
        async with agent(service.mcp, service.keys["reader"][0]) as client:
            doc = await call(client, "read_document", document_id=service.docs["parking"])
            listed = await call(client, "list_documents")
            return doc, listed

    doc, listed = run(go)
    assert doc["document"]["title"] == "Parking" and doc["document"]["collection"] == "handbook"
    assert "level B2" in doc["chunks"][0]["text"] and doc["chunks"][0]["ordinal"] == 0
    assert doc["next_first"] is None
    # newest first; not the HR document, not finance
    assert [d["id"] for d in listed["items"]] == [service.docs["guide"], service.docs["parking"]]


def test_read_document_a_part_at_a_time(service: Service) -> None:
    async def go() -> list[Any]:
        parts, first = [], 0
        async with agent(service.mcp, service.keys["reader"][0]) as client:
            while first is not None:
                part = await call(client, "read_document", document_id=service.docs["guide"], first=first, limit=1)
                parts.append(part)
                first = part["next_first"]
        return parts

    parts = run(go)
    assert len(parts) >= 3 and all(len(p["chunks"]) == 1 for p in parts)
    assert [p["chunks"][0]["ordinal"] for p in parts] == list(range(len(parts)))
    whole = "\n".join(p["chunks"][0]["text"] for p in parts)
    assert whole.index("front desk") < whole.index("red badge") < whole.index("KS-Guest")


def test_ask_answers_with_citations(service: Service) -> None:
    async def go() -> Any:
        async with agent(service.mcp, service.keys["reader"][0]) as client:
            return await call(client, "ask", question="Where do visitors park?")

    answer = run(go)
    assert "B2" in answer["answer"] and answer["grounded"]
    assert answer["citations"][0]["document_id"] == service.docs["parking"]


def test_an_agent_never_sees_what_its_key_may_not_read(service: Service) -> None:
    salaries, expenses = service.docs["salaries"], service.docs["expenses"]

    async def go() -> dict[str, Any]:
        async with agent(service.mcp, service.keys["reader"][0]) as client:
            return {
                "search": await call(client, "search", query="salary review bonus pool April", top_k=10),
                "keyword": await call(client, "search", query="salary review", mode="keyword"),
                "ask": await call(client, "ask", question="When is the salary review?"),
                "read": await refused(client, "read_document", document_id=salaries),
                "read other collection": await refused(client, "read_document", document_id=expenses),
                "search other collection": await refused(client, "search", query="expense", collection="finance"),
                "list other collection": await refused(client, "list_documents", collection="finance"),
            }

    seen = run(go)
    found = {h["document_id"] for h in seen["search"]["results"]} | {
        h["document_id"] for h in seen["keyword"]["results"]
    }
    assert salaries not in found and expenses not in found
    assert all(c["document_id"] != salaries for c in seen["ask"]["citations"])
    assert "April" not in seen["ask"]["answer"]
    # the same words as the REST API's 404: a document out of reach looks like one that does not exist
    assert seen["read"].endswith(f"404 Not found: document {salaries} does not exist")
    assert "404 Not found" in seen["read other collection"]
    assert "404 Not found: collection 'finance' does not exist" in seen["search other collection"]
    assert "404 Not found" in seen["list other collection"]


def test_impersonation_as_in_rest(service: Service) -> None:
    portal = service.keys["portal"][0]

    async def go() -> tuple[set[str], set[str]]:
        async with agent(service.mcp, portal, **{"X-On-Behalf-Of": "user:carol,group:hr"}) as client:
            as_hr = await call(client, "search", query="salary review", mode="keyword")
        async with agent(service.mcp, portal) as client:
            as_itself = await call(client, "search", query="salary review", mode="keyword")
        return {h["document_id"] for h in as_hr["results"]}, {h["document_id"] for h in as_itself["results"]}

    as_hr, as_itself = run(go)
    assert service.docs["salaries"] in as_hr and service.docs["salaries"] not in as_itself
    # a key without the impersonate scope may not act for someone else: refused before MCP is reached
    reply = httpx.post(
        service.mcp,
        headers={"Authorization": f"Bearer {service.keys['reader'][0]}", "X-On-Behalf-Of": "group:hr"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert reply.status_code == 403 and reply.headers["content-type"] == PROBLEM
    assert "impersonate" in reply.json()["detail"]


def test_a_write_key_may_not_read(service: Service) -> None:
    async def go() -> tuple[set[str], str, str]:
        async with agent(service.mcp, service.keys["writer"][0]) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            return tools, await refused(client, "search", query="parking"), await refused(client, "ask", question="x?")

    tools, search, ask = run(go)
    assert tools == TOOLS  # listing tools reveals no document
    assert search.endswith("403 Forbidden: this key lacks the 'read' scope")
    assert ask.endswith("403 Forbidden: this key lacks the 'read' scope")


@pytest.mark.parametrize("key", [None, "ks_not-a-real-key"])
def test_strangers_are_refused_before_mcp(service: Service, key: str | None) -> None:
    statuses: list[int] = []
    listed: list[Any] = []

    async def go() -> None:
        async with agent(service.mcp, key, statuses) as client:
            listed.append(await client.list_tools())

    with pytest.raises(Exception, match="unhandled errors"):  # the SDK's task group carries its MCPError
        run(go)
    assert not listed and statuses and set(statuses) == {401}
    # what the agent's HTTP client got: the REST API's problem, with the bearer challenge
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = httpx.post(service.mcp, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert reply.status_code == 401 and reply.headers["content-type"] == PROBLEM
    assert reply.headers["www-authenticate"] == "Bearer"
    assert "tools" not in reply.text


def test_tool_calls_are_audited_like_rest_calls(service: Service) -> None:
    reader, reader_id = service.keys["reader"]

    async def go() -> None:
        async with agent(service.mcp, reader) as client:
            await call(client, "search", query="north garage level")

    run(go)
    audit = httpx.get(
        f"{service.server.url}/v1/audit",
        params={"action": "search", "limit": 50},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()["items"]
    mine = [e for e in audit if e["key_id"] == reader_id]
    assert mine and mine[0]["status"] == 200 and service.docs["parking"] in mine[0]["target_ids"]
    assert mine[0]["principals"] == ["user:alice"]


def test_rest_and_mcp_share_the_key_rate_limit(tmp_path: Path) -> None:
    server = Server(Settings(data_dir=tmp_path / "data"), KS_ADMIN_KEY=ADMIN, KS_RATE_LIMIT_PER_MINUTE="3")
    try:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        assert [httpx.get(f"{server.url}/v1/jobs", headers=auth).status_code for _ in range(3)] == [200] * 3
        reply = httpx.post(f"{server.url}/mcp", headers=auth, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert reply.status_code == 429 and reply.headers["content-type"] == PROBLEM
        assert int(reply.headers["retry-after"]) >= 1
    finally:
        server.stop()


def test_get_and_delete_are_refused_not_held_open(service: Service) -> None:
    # stateless: no stream for a GET to hold open, no session for a DELETE to end
    auth = {"Authorization": f"Bearer {service.keys['reader'][0]}", "Accept": "text/event-stream"}
    for method in ("GET", "DELETE"):
        reply = httpx.request(method, service.mcp, headers=auth, timeout=10)
        assert reply.status_code == 405 and reply.headers["allow"] == "POST", method
        assert reply.headers["content-type"] == PROBLEM
