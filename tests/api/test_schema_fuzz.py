"""Property-based run over the OpenAPI schema (schemathesis): no 5xx, and every response fits the schema.

Runs on the embedded default with a small corpus; each operation gets a bounded number of generated cases. The
service has an admin key and the cases send it, as the schema's bearer scheme says; schemathesis also leaves it
out on purpose and expects 401.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config._auth import AuthConfig  # not re-exported by schemathesis.config

from app.container import build_container
from app.core.config import Settings
from app.main import create_app

_state: dict = {}
KEY = "schema-fuzz-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _app():
    from pathlib import Path
    from tempfile import mkdtemp

    from app.providers.local import E5Embedder

    container = build_container(
        Settings(data_dir=Path(mkdtemp()) / "data", ingest_workers=0, admin_key=KEY), embedder=E5Embedder()
    )
    app = create_app(container=container)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for text in ("Employees receive 10 days of paid leave.", "在宅勤務は週3日まで認められます。"):
            assert client.post("/v1/documents", json={"text": text}, headers=AUTH).status_code == 201
    _state["container"] = container
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())
# as `[auth.openapi.bearerAuth] bearer = ...` in schemathesis.toml: the key fills the schema's bearer scheme
schema.config.auth = AuthConfig(openapi={"bearerAuth": {"bearer": KEY}})


@pytest.fixture(scope="module", autouse=True)
def _close():
    yield
    _state["container"].close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_fit_the_schema(case):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    # Semantic refusals of schema-valid input (an unsupported file type → 415, an unknown cursor → 400) are
    # correct answers, so "positive data acceptance" is not asked for; every other check is.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
