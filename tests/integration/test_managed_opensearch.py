"""Managed OpenSearch: the service reaches a real OpenSearch through a TLS proxy whose certificate comes from a CA
made here (KS_OPENSEARCH_CA_BUNDLE), with basic auth, and with AWS SigV4 (Amazon OpenSearch Service "es", and
OpenSearch Serverless "aoss", whose proxy also refuses the APIs Serverless lacks). The signatures are checked with
botocore against known test credentials that boto3's default chain finds in the environment."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.container import build_container
from app.core.config import Settings
from app.core.errors import ConfigurationError, StoreUnavailable
from app.main import create_app
from app.stores.vector.base import IndexInfo
from app.stores.vector.opensearch import OpenSearchChunkStore
from tests.fakes.opensearch_proxy import ACCESS_KEY, SECRET_KEY, ManagedOpenSearch, make_ca

pytestmark = pytest.mark.opensearch
PASSWORD = "s3cret-Passw0rd!"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def index(opensearch_url: str) -> Iterator[str]:
    name = f"ks-managed-{uuid.uuid4().hex[:10]}"
    yield name
    httpx.delete(f"{opensearch_url.split(',')[0]}/{name}*", timeout=30)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Known test credentials where boto3's default chain looks first, and none of the machine's own."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def _round_trip(settings: Settings, embedder, *, settle: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """Upload, search, update, delete through the API, as a user would."""
    container = build_container(settings, embedder=embedder)
    with TestClient(create_app(container=container, close_container=True)) as client:
        assert client.get("/readyz").status_code == 200, client.get("/readyz").text
        doc = client.post("/v1/documents", json={"title": "Badges", "text": "Lost badges are replaced at reception."})
        assert doc.status_code == 201, doc.text
        doc_id = doc.json()["id"]

        def found(query: dict) -> list:  # type: ignore[type-arg]
            deadline = time.monotonic() + max(settle, 0.1)
            while True:
                hits = client.post("/v1/search", json=query).json()["results"]
                if hits or time.monotonic() > deadline:
                    return hits
                time.sleep(0.5)

        assert found({"query": "where are lost badges replaced"})[0]["document_id"] == doc_id
        assert client.patch(f"/v1/documents/{doc_id}", json={"metadata": {"dept": "facilities"}}).status_code == 200
        filtered = {"query": "lost badges", "filters": {"dept": "facilities"}}
        assert found(filtered)[0]["document_id"] == doc_id
        assert client.delete(f"/v1/documents/{doc_id}").status_code == 204
        time.sleep(settle)
        assert client.post("/v1/search", json={"query": "lost badges"}).json()["results"] == []


def test_tls_with_a_private_ca_and_basic_auth(certs, opensearch_url: str, index: str, tmp_path: Path, embedder):  # type: ignore[no-untyped-def]
    with ManagedOpenSearch(opensearch_url, certs, auth="basic", password=PASSWORD) as proxy:
        settings = Settings(
            data_dir=tmp_path / "data",
            vector_store="opensearch",
            opensearch_url=proxy.url,
            opensearch_index=index,
            opensearch_username="ks",
            opensearch_password=SecretStr(PASSWORD),
            opensearch_ca_bundle=certs[0],
        )
        _round_trip(settings, embedder)
        assert proxy.accepted > 0 and proxy.rejected == []

        info = IndexInfo(embedding_model="m", dimension=4)
        # without the CA: the certificate is refused, and the message says which setting fixes it
        untrusted = OpenSearchChunkStore.from_settings(settings.model_copy(update={"opensearch_ca_bundle": None}))
        with pytest.raises(StoreUnavailable, match="KS_OPENSEARCH_CA_BUNDLE"):
            untrusted.ensure_ready(info)
        # a wrong password: 401, said plainly, and the password never appears
        wrong = OpenSearchChunkStore.from_settings(
            settings.model_copy(update={"opensearch_password": SecretStr("nope")})
        )
        with pytest.raises(StoreUnavailable, match="credentials") as exc:
            wrong.ensure_ready(info)
        assert "nope" not in str(exc.value) and PASSWORD not in str(exc.value)
        # a CA bundle that is not there stops the start with the setting's name
        with pytest.raises(ConfigurationError, match="KS_OPENSEARCH_CA_BUNDLE"):
            OpenSearchChunkStore.from_settings(settings.model_copy(update={"opensearch_ca_bundle": tmp_path / "x.pem"}))


@pytest.mark.parametrize("service", ["es", "aoss"])
def test_sigv4_signed_requests(  # type: ignore[no-untyped-def]
    service: str, certs, opensearch_url: str, index: str, tmp_path: Path, embedder, aws_credentials
):
    serverless = service == "aoss"
    with ManagedOpenSearch(
        opensearch_url, certs, auth="sigv4", service=service, region="us-west-2", serverless=serverless
    ) as proxy:
        settings = Settings(
            data_dir=tmp_path / "data",
            vector_store="opensearch",
            opensearch_url=proxy.url,
            opensearch_index=index,
            opensearch_auth="sigv4",
            opensearch_aws_service=service,
            opensearch_aws_region="us-west-2",
            opensearch_ca_bundle=certs[0],
        )
        # Serverless refreshes by itself (here: the node's 1 s refresh), so a write shows up a moment later
        _round_trip(settings, embedder, settle=3.0 if serverless else 0.0)
        assert proxy.accepted > 0 and proxy.rejected == [], proxy.rejected
        assert proxy.refused_apis == []  # the store never called what Serverless lacks

        # a region the cluster is not in: every request refused, said plainly
        other = OpenSearchChunkStore.from_settings(settings.model_copy(update={"opensearch_aws_region": "eu-west-1"}))
        with pytest.raises(StoreUnavailable, match="credentials"):
            other.ensure_ready(IndexInfo(embedding_model="m", dimension=4))
        assert any("credential scope" in r for r in proxy.rejected)


def test_sigv4_without_credentials_or_region_stops_the_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = Settings(
        opensearch_url="https://127.0.0.1:1", opensearch_auth="sigv4", opensearch_aws_region="us-west-2"
    )
    with pytest.raises(ConfigurationError, match="no AWS credentials"):
        OpenSearchChunkStore.from_settings(settings)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    with pytest.raises(ConfigurationError, match="region"):
        OpenSearchChunkStore.from_settings(settings.model_copy(update={"opensearch_aws_region": None}))
