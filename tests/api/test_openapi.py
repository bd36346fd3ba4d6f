"""What a client developer reads: the schema's security scheme and problem responses, and /docs and /redoc,
whose assets come from this service (the browser test, tests/ui/test_docs.py, drives them in chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.api.problems import OPERATION_PROBLEMS
from app.container import build_container
from app.core.config import Settings
from app.main import create_app
from tests.helpers import PROBLEM

KEY = "openapi-test-admin-key"
PUBLIC = {"healthz", "readyz"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openapi") / "data",
        admin_key=SecretStr(KEY),
        ingest_workers=0,
        rate_limit_per_minute=1000,
    )
    container = build_container(settings, embedder=embedder)
    with TestClient(create_app(container=container), headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client
    container.close()


@pytest.fixture(scope="module")
def schema(service: TestClient) -> dict[str, Any]:
    return service.get("/openapi.json").json()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_protected_operations_declare_the_bearer_scheme(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for method, path, operation in operations(schema):
        if operation["operationId"] in PUBLIC:
            assert "security" not in operation, path
        else:
            assert operation["security"] == [{"bearerAuth": []}], f"{method} {path}"
            assert {"401", "403", "429"} <= set(operation["responses"]), f"{method} {path}"


def test_every_operation_has_its_problem_list_and_examples(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        assert operation["operationId"] in OPERATION_PROBLEMS, f"{method} {path}: add it to OPERATION_PROBLEMS"
        for code, reply in operation["responses"].items():
            if int(code) < 400 or operation["operationId"] == "readyz":
                continue
            # problem+json only: generated clients parse errors by this media type
            assert list(reply["content"]) == [PROBLEM], f"{method} {path} {code}"
            example = reply["content"][PROBLEM]["example"]
            assert example["status"] == int(code) and example["detail"] and example["instance"] == path
    # FastAPI's own 422 model is gone: every error has the one Problem shape
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def _documented(schema: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(c) for c in schema["paths"][path][method.lower()]["responses"]}


def test_real_problem_replies_are_documented_for_their_operation(service: TestClient, schema: dict[str, Any]) -> None:
    reader = service.post("/v1/keys", json={"name": "reader", "scopes": ["read"], "collections": ["hr"]}).json()["key"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    doc = service.post("/v1/documents", json={"text": "Visitors park on level B2.", "collection": "hr"}).json()
    source = {"name": "handbook", "bucket": "my-bucket", "collection": "hr"}
    assert service.post("/v1/sources", json=source).status_code == 201
    cases = [
        # (method, template, what the client sends, status it gets)
        ("POST", "/v1/search", {"json": {"query": "park"}, "headers": {"Authorization": "Bearer nope"}}, 401),
        ("POST", "/v1/documents", {"json": {"text": "x"}, "headers": as_reader}, 403),
        ("POST", "/v1/search", {"json": {"query": "park", "collection": "finance"}, "headers": as_reader}, 404),
        ("GET", "/v1/documents/{document_id}", {"url": "/v1/documents/missing"}, 404),
        ("POST", "/v1/sources", {"json": source}, 409),  # registered just above
        ("POST", "/v1/search", {"json": {"query": "x" * (2 * 1024 * 1024)}}, 413),
        ("POST", "/v1/documents", {"content": b"a,b", "headers": {"content-type": "text/csv"}}, 415),
        ("POST", "/v1/chat", {"json": {"message": " "}}, 422),
        ("GET", "/v1/documents", {"params": {"cursor": "not-a-cursor"}}, 400),
        ("DELETE", "/v1/keys/{key_id}", {"url": "/v1/keys/missing"}, 404),
    ]
    for method, template, request, status in cases:
        url = request.pop("url", template)
        reply = service.request(method, url, **request)
        assert reply.status_code == status, (method, url, reply.text)
        assert reply.headers["content-type"] == PROBLEM
        assert status in _documented(schema, method, template), f"{method} {template} answers {status} undocumented"
        example = schema["paths"][template][method.lower()]["responses"][str(status)]["content"][PROBLEM]["example"]
        assert reply.json()["title"] == example["title"], (template, status)
    assert service.get(f"/v1/documents/{doc['id']}").status_code == 200


def test_rate_limited_replies_are_documented(tmp_path: Path, embedder: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_key=SecretStr(KEY), rate_limit_per_minute=2)
    container = build_container(settings, embedder=embedder)
    try:
        with TestClient(create_app(container=container), headers={"Authorization": f"Bearer {KEY}"}) as client:
            replies = [client.get("/v1/jobs") for _ in range(3)]
            schema = client.get("/openapi.json").json()
    finally:
        container.close()
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert int(replies[2].headers["retry-after"]) >= 1
    assert 429 in _documented(schema, "GET", "/v1/jobs")


# --- the pages ---------------------------------------------------------------------------------------------
ASSET = re.compile(r'(?:src|href|spec-url|data-openapi-url)="([^"]+)"')


@pytest.mark.parametrize(("page", "root"), [("/docs", ""), ("/redoc", ""), ("/docs", "/kb"), ("/redoc", "/kb")])
def test_docs_pages_load_everything_from_this_service(tmp_path: Path, page: str, root: str) -> None:
    container = build_container(Settings(data_dir=tmp_path / "data", root_path=root))
    try:
        # as uvicorn serves with root_path=KS_ROOT_PATH: the gateway strips the prefix, uvicorn puts it back
        with TestClient(create_app(container=container), root_path=root) as client:
            html = client.get(f"{root}{page}")
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            csp = html.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self';" in csp
            urls = ASSET.findall(html.text)
            assert urls and all(u.startswith(f"{root}/") for u in urls), urls  # nothing from a CDN
            assert "<script>" not in html.text  # no inline script: the CSP forbids it
            for url in urls:
                asset = client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 100, url
    finally:
        container.close()


def test_swagger_bundle_is_the_packaged_version(service: TestClient) -> None:
    bundle = service.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle.text), "Swagger UI 5 expected"


def test_wrong_method_names_every_method_of_the_path(service: TestClient) -> None:
    reply = service.put("/v1/keys")
    assert reply.status_code == 405 and reply.headers["content-type"] == PROBLEM
    assert reply.headers["allow"] == "GET, POST"
    assert service.delete("/v1/search").headers["allow"] == "POST"
