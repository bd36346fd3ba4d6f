"""Item 9: without KS_ADMIN_KEY the service is open on loopback only while no key has ever existed. Revoking the
last key once opened it to anyone on the host, who could then make an admin key; now it stays closed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.core.config import Settings
from tests.integration.test_process import Server
from tests.security.conftest import start_server


@pytest.fixture(scope="module")
def open_server(server_settings: Settings) -> Iterator[Server]:
    s = start_server(server_settings)  # no KS_ADMIN_KEY
    yield s
    s.stop()


def test_revoking_every_key_never_reopens_the_service(open_server: Server):
    with httpx.Client(base_url=open_server.url, timeout=60) as http:
        assert http.get("/v1/documents").status_code == 200  # the development mode: nothing configured yet
        created = http.post("/v1/keys", json={"name": "ops", "scopes": ["admin"]})
        assert created.status_code == 201
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        assert http.get("/v1/documents").status_code == 401  # a key exists: authentication from now on
        assert http.delete(f"/v1/keys/{created.json()['id']}", headers=key).status_code == 204
        for path in ("/v1/documents", "/v1/keys"):
            r = http.get(path)
            assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"], r.text
        grab = http.post("/v1/keys", json={"name": "mine", "scopes": ["admin"]})
        assert grab.status_code == 401
        assert http.get("/v1/documents", headers=key).status_code == 401  # the revoked key stays revoked
