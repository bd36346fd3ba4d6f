"""A client generated from the live OpenAPI schema (openapi-python-client) works against a running service.

The generator runs on /openapi.json of a real `knowledge-search serve` process; the generated package is
imported and used with the admin key as its bearer token: upload JSON text, search and chat, parse problems, and
make a typed call of every endpoint group (every tag of the schema).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.integration.test_process import Server

pytestmark = pytest.mark.process
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
KEY = "generated-client-key"
PACKAGE = "ks_generated_client"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated-client")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    s = Server(Settings(data_dir=workdir / "data"), KS_ADMIN_KEY=KEY)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def generated(server: Server, workdir: Path) -> Iterator[ModuleType]:
    assert GENERATOR.exists(), "openapi-python-client is missing: pip install -e '.[test]'"
    schema = workdir / "openapi.json"
    schema.write_bytes(httpx.get(f"{server.url}/openapi.json", timeout=30).content)
    config = workdir / "generator.yaml"
    # no post hooks: formatting the output (ruff) is not what is tested here
    config.write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\nproject_name_override: {PACKAGE}\n")
    out = workdir / "gen" / PACKAGE
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(schema), "--output-path", str(out), "--meta", "none"]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    # the generator says "Warning(s) encountered" when it had to skip part of the schema
    assert "Warning" not in report and "Unable to" not in report, report
    sys.path.insert(0, str(out.parent))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out.parent))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def operation(package: ModuleType, tag: str, name: str) -> Any:
    """The generated module of one operation, found by its tag and route name (operation ids may change)."""
    api = importlib.import_module(f"{package.__name__}.api.{tag}")
    found = [m.name for m in pkgutil.iter_modules(api.__path__) if m.name == name or m.name.startswith(f"{name}_")]
    assert len(found) == 1, (tag, name, found)
    return importlib.import_module(f"{api.__name__}.{found[0]}")


def model(package: ModuleType, suffix: str) -> Any:
    models = importlib.import_module(f"{package.__name__}.models")
    found = [n for n in dir(models) if n.endswith(suffix)]
    assert len(found) == 1, (suffix, found)
    return getattr(models, found[0])


def _named(package: ModuleType, name: str) -> Any:
    """A generated model by its exact name (suffixes would also find e.g. `KeyCreateScopesItem`)."""
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


def test_generated_client_uploads_searches_and_chats(generated: ModuleType, server: Server) -> None:
    client = generated.AuthenticatedClient(base_url=server.url, token=KEY, raise_on_unexpected_status=True)
    with client:
        upload = operation(generated, "documents", "upload_document")
        doc = upload.sync(
            client=client,
            body=model(generated, "TextDocumentCreate")(
                text="Visitors park on level B2 of the north garage; the garage closes at midnight.",
                title="Parking",
                collection="facilities",
            ),
        )
        assert doc.status == "indexed" and doc.collection == "facilities" and doc.chunk_count >= 1

        search = operation(generated, "search", "search")
        found = search.sync(
            client=client,
            body=model(generated, "SearchRequest")(
                query="where do visitors park", mode=model(generated, "SearchRequestMode")("hybrid"), top_k=3
            ),
        )
        assert found.results and found.results[0].document_id == doc.id
        assert found.results[0].source.char_end > found.results[0].source.char_start

        chat = operation(generated, "chat", "chat")
        answer = chat.sync(client=client, body=model(generated, "ChatRequest")(message="Where do visitors park?"))
        assert "B2" in answer.answer and answer.grounded
        assert answer.citations[0].document_id == doc.id and answer.model == "extractive"


def test_generated_client_reads_problems(generated: ModuleType, server: Server) -> None:
    with generated.AuthenticatedClient(base_url=server.url, token=KEY) as client:
        # errors are problem+json; the generated client parses them into its Problem model only when the
        # schema declares Problem under application/problem+json (the media type the API sends)
        get = operation(generated, "documents", "get_document")
        missing = get.sync_detailed(client=client, document_id="does-not-exist")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert missing.parsed is not None, "4xx responses must declare Problem under application/problem+json"
        assert missing.parsed.status == 404 and missing.parsed.detail


def test_generated_client_calls_every_endpoint_group(generated: ModuleType, server: Server) -> None:
    """One typed call (or a few) per tag of the schema, through the generated models."""
    tags = {t["name"] for t in httpx.get(f"{server.url}/openapi.json", timeout=30).json()["tags"]}
    covered: set[str] = set()

    def op(tag: str, name: str) -> Any:
        covered.add(tag)
        return operation(generated, tag, name)

    with generated.AuthenticatedClient(base_url=server.url, token=KEY, raise_on_unexpected_status=True) as client:
        assert op("health", "healthz").sync(client=client).status == "ok"
        assert op("health", "readyz").sync(client=client).checks.additional_properties == {
            "metadata_store": "ok",
            "chunk_store": "ok",
        }

        doc = op("documents", "upload_document").sync(
            client=client,
            body=model(generated, "TextDocumentCreate")(
                text="Lockers are on level 2.", title="Lockers", collection="gym"
            ),
        )
        page = op("documents", "list_documents").sync(client=client, collection="gym")
        assert [d.id for d in page.items] == [doc.id]
        chunks = op("documents", "get_chunks").sync(client=client, document_id=doc.id)
        assert "level 2" in chunks.items[0].text and chunks.items[0].source.char_end > 0
        patched = op("documents", "update_document").sync(
            client=client, document_id=doc.id, body=model(generated, "DocumentPatch")(title="Gym lockers")
        )
        assert patched.title == "Gym lockers"

        jobs = op("jobs", "list_jobs").sync(client=client, collection="gym")
        assert jobs.items[0].document_id == doc.id and jobs.items[0].status == "succeeded"
        assert op("jobs", "get_job").sync(client=client, job_id=jobs.items[0].id).progress_done >= 1

        created = op("admin", "post_key").sync(
            client=client,
            body=model(generated, "KeyCreate")(name="typed", scopes=[_named(generated, "Scope")("read")]),
        )
        assert created.key.startswith("ks_") and created.scopes == ["read"]
        assert created.id in {k.id for k in op("admin", "list_keys").sync(client=client).items}
        collection = op("admin", "put_collection").sync(
            client=client, name="gym", body=model(generated, "CollectionSettings")(redact_pii=True)
        )
        assert collection.name == "gym" and collection.redact_pii
        audit = op("admin", "get_audit").sync(client=client, action="key.create")
        assert audit.items[0].target_ids == [created.id]
        assert op("admin", "revoke_key").sync_detailed(client=client, key_id=created.id).status_code == 204

        assert (
            op("search", "search")
            .sync(client=client, body=model(generated, "SearchRequest")(query="lockers", collection="gym"))
            .results[0]
            .document_id
            == doc.id
        )
        assert (
            op("chat", "chat")
            .sync(
                client=client, body=model(generated, "ChatRequest")(message="Where are the lockers?", collection="gym")
            )
            .citations[0]
            .document_id
            == doc.id
        )

        # no S3 here: the (empty) list of registered sources, and the typed 404 of an unknown one
        assert op("sources", "list_sources").sync(client=client).items == []
        missing = op("sources", "get_source").sync_detailed(client=client, name="no-such-source")
        assert missing.status_code == 404 and missing.parsed.title == "Not found"

        assert op("documents", "delete_document").sync_detailed(client=client, document_id=doc.id).status_code == 204
    assert covered == tags
