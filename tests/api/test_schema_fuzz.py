"""Property-based runs over the OpenAPI schema (schemathesis), on both backends: every operation alone, then
sequences of operations (stateful: upload → get → patch → delete ...) with the ids the API really returned.

Every check is on: no 5xx, every status, content type, header and body as documented, invalid input refused,
what was deleted stays gone. The one tuning is the list of statuses that count as a correct answer to
schema-valid input: a schema says what a well-formed request looks like, not that the file it carries is a
document (415), that an id exists (404), that a cursor came from us (400) or that the caller may (401/403).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.config import SchemathesisConfig

from app.container import build_container
from app.core.config import Settings
from app.main import create_app

SEMANTIC_REFUSALS = ["2xx", "400", "401", "403", "404", "409", "415"]
KEY = "schema-fuzz-admin-key"
# The service has an admin key and the cases send it through the schema's bearer scheme (as
# `[auth.openapi.bearerAuth]` in schemathesis.toml); schemathesis also leaves it out or spoils it and expects 401.
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"bearerAuth": {"bearer": KEY}}},
        "checks": {"positive_data_acceptance": {"expected-statuses": SEMANTIC_REFUSALS}},
        "operations": [
            {
                # a file's bytes are "string, format: binary" to a schema: that they hold no text (an empty file, a
                # broken PDF) is found by reading them, and answered 422 with the reason
                "include-name": ["POST /v1/documents", "PUT /v1/documents/{document_id}"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*SEMANTIC_REFUSALS, "422"]}},
            }
        ],
    }
)
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
# The server's state outlives an example: replaying or shrinking a sequence meets other documents, keys and
# sources than the first run did. So sequences are neither shrunk nor taken from an example database; a failing
# one is still replayed once to be reported, and when the state moved on hypothesis reports
# FlakyStrategyDefinition instead: that too is a failure of the server (run again to read it).
STATEFUL = settings(
    max_examples=12,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    database=None,
)


@pytest.fixture(scope="module", params=["embedded", "production"])
def api_schema(
    request: pytest.FixtureRequest, embedder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    base = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz") / "data", ingest_workers=0, rate_limit_per_minute=0, admin_key=KEY
    )
    index = None
    if request.param == "production":
        from tests.conftest import _drop_indices, _truncate

        pg = request.getfixturevalue("migrated_postgres")
        os_url = request.getfixturevalue("opensearch_url")
        index = f"ks-fuzz-{request.node.name[-8:].lower()}"
        _truncate(pg)
        base = base.model_copy(
            update={
                "database_url": pg,
                "vector_store": "opensearch",
                "opensearch_url": os_url,
                "opensearch_index": index,
            }
        )
    container = build_container(base, embedder=embedder)
    app = create_app(container=container)
    with TestClient(app, base_url="http://localhost") as client:
        for text in ("Employees receive 10 days of paid leave.", "在宅勤務は週3日まで認められます。"):
            reply = client.post("/v1/documents", json={"text": text}, headers={"Authorization": f"Bearer {KEY}"})
            assert reply.status_code == 201, reply.text
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    container.close()
    if index is not None:
        _drop_indices(base.opensearch_url, index)


def test_each_operation_answers_as_documented(api_schema: Any) -> None:
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @SETTINGS
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate()

        answers_as_documented()


def test_sequences_of_operations_answer_as_documented(api_schema: Any) -> None:
    # A sequence hypothesis cannot replay (FlakyStrategyDefinition: the server's state moved on, see STATEFUL) is
    # run afresh, at most three times in all; a failure that replays is reported at once, as is a third flake.
    for attempt in range(3):
        try:
            api_schema.as_state_machine().run(settings=STATEFUL)
            return
        except FlakyStrategyDefinition:
            if attempt == 2:
                raise
