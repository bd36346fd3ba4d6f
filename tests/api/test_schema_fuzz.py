"""Property-based runs over the OpenAPI schema (schemathesis), on both backends: every operation alone, then
sequences of operations (stateful: upload → get → patch → delete ...) with the ids the API really returned.

Every check is on: no 5xx, every status, content type, header and body as documented, invalid input refused,
what was deleted stays gone. The one tuning is the list of statuses that count as a correct answer to
schema-valid input: a schema says what a well-formed request looks like, not that the file it carries is a
document (415), that an id exists (404), that a cursor came from us (400) or that the caller may (401/403).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema_rs
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from app.api.uploads import UPLOAD_BODY
from app.container import build_container
from app.core.config import Settings
from app.main import create_app
from tests.conftest import _drop_indices, _truncate

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
# Every sequence (each hypothesis test case) starts from the same state: a fresh server holding the two seed
# documents (Server.reset), so a failing sequence replays against what it first met, and the report lists it from
# the seeds on. (Several failed checks at once come as a BaseExceptionGroup, which hypothesis reports at once,
# without a replay.) Not shrunk: six steps at most are short to read already, shrinking one failure took four to
# five minutes (a fresh server per attempt), and replays are only nearly deterministic (one shrink in six met
# FlakyStrategyDefinition). Sequences are not taken from an example database: each run draws its own.
STATEFUL = settings(
    max_examples=12,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    database=None,
)
SEEDS = ("Employees receive 10 days of paid leave.", "在宅勤務は週3日まで認められます。")


class RememberingEmbedder:
    """The session's embedder, remembering what it embedded: the model is deterministic, and every reset embeds
    the seed documents again (half of what a reset costs)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.known: dict[tuple[str, ...], np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        key = tuple(texts)
        if key not in self.known:
            self.known[key] = self.inner.embed_documents(texts)
        return self.known[key].copy()


class Forward(Starlette):
    """The one ASGI app schemathesis knows: each request goes to the server's app of the moment. A Starlette with
    that app's routes, so that schemathesis takes literals from the same handlers' modules as from the app itself.
    Each app's lifespan runs in the client that seeds it (Server.reset); schemathesis' lifespan call is answered
    as an app without one answers it, by returning."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server

    @property
    def routes(self) -> list[BaseRoute]:
        assert self.server.current is not None, "reset() first"
        return self.server.current.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            assert self.server.current is not None, "reset() first"
            await self.server.current(scope, receive, send)


class Server:
    """The service under test, rebuilt from nothing by ``reset``: a new data dir (SQLite, chunk index, blobs,
    audit journal), on production also emptied Postgres tables (documents, jobs, API keys, audit events, rate
    limits, sources, ...) and a dropped OpenSearch index; then a new container and app (nothing held in memory
    survives) holding the two seed documents."""

    def __init__(self, base: Settings, embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.base = base
        self.embedder = embedder
        self.tmp_path_factory = tmp_path_factory
        self.current: FastAPI | None = None
        self.data_dir: Path | None = None
        self.running = ExitStack()
        self.app = Forward(self)

    def reset(self) -> None:
        self.close()
        if self.base.database_url is not None:  # production
            _truncate(self.base.database_url)
            _drop_indices(self.base.opensearch_url, self.base.opensearch_index)
        self.data_dir = self.tmp_path_factory.mktemp("fuzz") / "data"
        container = build_container(self.base.model_copy(update={"data_dir": self.data_dir}), embedder=self.embedder)
        self.running.callback(container.close)
        app = create_app(container=container)
        client = self.running.enter_context(TestClient(app, base_url="http://localhost"))
        for text in SEEDS:
            reply = client.post("/v1/documents", json={"text": text}, headers={"Authorization": f"Bearer {KEY}"})
            assert reply.status_code == 201, reply.text
        self.current = app

    def close(self) -> None:
        self.current = None
        self.running.close()  # the app's lifespan ended, then its container closed
        # A sync (POST /v1/sources/{name}/sync) runs in a thread of its own, which closing the container waits for
        # (here it ends at once: no S3 credentials); one still running would write into the next sequence's stores.
        running = [t.name for t in threading.enumerate() if t.name.startswith("sync-")]
        assert not running, f"{running} outlived their container"
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
            self.data_dir = None


@pytest.fixture(scope="module", params=["embedded", "production"])
def server(request: pytest.FixtureRequest, embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = Settings(ingest_workers=0, rate_limit_per_minute=0, admin_key=KEY)
    if request.param == "production":
        base = base.model_copy(
            update={
                "database_url": request.getfixturevalue("migrated_postgres"),
                "vector_store": "opensearch",
                "opensearch_url": request.getfixturevalue("opensearch_url"),
                "opensearch_index": f"ks-fuzz-{request.node.name[-8:].lower()}",
            }
        )
    running = Server(base, RememberingEmbedder(embedder), tmp_path_factory)
    running.reset()
    yield running
    running.close()
    if request.param == "production":
        _drop_indices(base.opensearch_url, base.opensearch_index)


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", server.app, config=CONFIG)


def test_each_operation_answers_as_documented(api_schema: Any) -> None:
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @SETTINGS
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate()

        answers_as_documented()


def test_sequences_of_operations_answer_as_documented(api_schema: Any, server: Server) -> None:
    steps: list[str] = []  # the calls of the sequence running now: after a failure, the failing one

    class FromSeeds(api_schema.as_state_machine()):  # type: ignore[misc]
        """Each sequence (one hypothesis test case, generated or replayed) starts from a fresh server."""

        def setup(self) -> None:
            server.reset()
            steps.clear()

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)  # records the response for the checks across steps
            steps.append(f"{case.method} {case.formatted_path}{_query(case)} -> {response.status_code}")

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, *args, **kwargs)
            except FailureGroup as group:
                if not all(_valid_as_sent(failure, case) for failure in group.exceptions):
                    raise

    try:
        FromSeeds.run(settings=STATEFUL)
    except (Exception, BaseExceptionGroup) as failure:  # several failed checks come as a BaseExceptionGroup
        # schemathesis reports the failing call only; what led to it, from the seeds on, reproduces it
        failure.add_note("The sequence, from the two seed documents on:\n" + "\n".join(f"  {s}" for s in steps))
        raise


# A form field is text on the wire: a value schemathesis makes "negative" by its type (null, a number, an object)
# reaches the server as a string the form's schema allows, and schemathesis (4.32) does not always see that: a
# replacement with `external_id: null` sends external_id "null" and is accepted, as it should be. Such a failure is
# dropped when the fields, as the text they arrive as, do match the schema.
FORM = jsonschema_rs.validator_for(UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]["schema"])


def _valid_as_sent(failure: BaseException, case: Any) -> bool:
    if not isinstance(failure, AcceptedNegativeData) or case.media_type != "multipart/form-data":
        return False
    if not isinstance(case.body, dict):
        return False
    return FORM.is_valid({name: _as_sent(value) for name, value in case.body.items()})


def _as_sent(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else json.dumps(value)


def _query(case: Any) -> str:
    return "?" + urlencode(case.query, doseq=True) if case.query else ""
