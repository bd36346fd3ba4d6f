"""Who may see what: API keys, document ACLs, impersonation, audit, rate limits, PII redaction (both backends)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.container import build_container
from app.main import create_app
from tests.helpers import PROBLEM

ADMIN = "admin-secret-for-tests"
HR_TEXT = "Salary review: the annual salary budget for the engineering bonus pool is 3 percent."
ENG_TEXT = "Engineering roadmap: the salary budget does not cover the new engineering bonus pool tooling."


@pytest.fixture
def service(settings, embedder):
    keyed = settings.model_copy(update={"admin_key": SecretStr(ADMIN)})
    container = build_container(keyed, embedder=embedder)
    with TestClient(create_app(container=container), base_url="http://localhost") as tc:
        yield tc, container
    container.close()


@pytest.fixture
def admin(service):
    """A second client on the same app that always sends the admin key."""
    client, _ = service
    return TestClient(client.app, headers={"Authorization": f"Bearer {ADMIN}"})


def make_key(admin, **body) -> str:
    r = admin.post("/v1/keys", json={"name": body.pop("name", "k"), **body})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("ks_") and "key_hash" not in created
    return created["key"]


def as_key(client: TestClient, key: str | None, **headers: str) -> dict[str, str]:
    out = dict(headers)
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


@pytest.fixture
def departments(admin):
    """HR and engineering documents that share many words; each readable by its own group only."""
    hr = admin.post("/v1/documents", json={"text": HR_TEXT, "collection": "corp", "acl": ["group:hr"]}).json()
    eng = admin.post("/v1/documents", json={"text": ENG_TEXT, "collection": "corp", "acl": ["group:eng"]}).json()
    public = admin.post(
        "/v1/documents", json={"text": "The bonus pool is announced in March.", "collection": "corp"}
    ).json()
    keys = {
        "hr": make_key(admin, name="hr", scopes=["read", "write"], principals=["group:hr"]),
        "eng": make_key(admin, name="eng", scopes=["read"], principals=["group:eng", "user:erin"]),
        "nobody": make_key(admin, name="nobody", scopes=["read"], principals=["user:zed"]),
        "other": make_key(admin, name="other", scopes=["read", "write"], principals=["group:hr"], collections=["misc"]),
        "app": make_key(admin, name="app", scopes=["read", "impersonate"], principals=[]),
    }
    return {"hr": hr["id"], "eng": eng["id"], "public": public["id"]}, keys


QUERIES = ["salary budget", "engineering bonus pool", "給与", "roadmap tooling", "percent"]


def _seen_documents(client: TestClient, headers: dict[str, str]) -> set[str]:
    seen: set[str] = set()
    for q in QUERIES:
        for mode in ("keyword", "semantic", "hybrid"):
            for extra in ({}, {"collection": "corp"}, {"filters": {}}):
                r = client.post("/v1/search", json={"query": q, "mode": mode, "top_k": 50, **extra}, headers=headers)
                assert r.status_code == 200, r.text
                seen |= {h["document_id"] for h in r.json()["results"]}
        r = client.post("/v1/chat", json={"message": f"What about the {q}?", "top_k": 20}, headers=headers)
        assert r.status_code == 200, r.text
        seen |= {c["document_id"] for c in r.json()["citations"]}
    listed = client.get("/v1/documents", params={"limit": 200}, headers=headers).json()["items"]
    return seen | {d["id"] for d in listed}


def test_no_department_sees_the_other(service, departments):
    client, _ = service
    ids, keys = departments
    assert _seen_documents(client, as_key(client, keys["hr"])) == {ids["hr"], ids["public"]}
    assert _seen_documents(client, as_key(client, keys["eng"])) == {ids["eng"], ids["public"]}
    assert _seen_documents(client, as_key(client, keys["nobody"])) == {ids["public"]}
    # impersonation: the trusted app acts with its user's principals only
    as_bob_in_hr = as_key(client, keys["app"], **{"X-On-Behalf-Of": "user:bob,group:hr"})
    assert _seen_documents(client, as_bob_in_hr) == {ids["hr"], ids["public"]}


def test_top_k_results_are_all_visible_ones(service, departments):
    client, _ = service
    ids, keys = departments
    r = client.post(
        "/v1/search",
        json={"query": "engineering bonus pool", "top_k": 2, "mode": "semantic"},
        headers=as_key(client, keys["hr"]),
    )
    assert {h["document_id"] for h in r.json()["results"]} == {ids["hr"], ids["public"]}


def test_reading_another_departments_document_is_404(service, departments):
    client, _ = service
    ids, keys = departments
    hr = as_key(client, keys["hr"])
    for path in (f"/v1/documents/{ids['eng']}", f"/v1/documents/{ids['eng']}/chunks"):
        r = client.get(path, headers=hr)
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert client.delete(f"/v1/documents/{ids['eng']}", headers=hr).status_code == 404
    assert client.patch(f"/v1/documents/{ids['eng']}", json={"acl": None}, headers=hr).status_code == 404
    assert client.get(f"/v1/documents/{ids['hr']}", headers=hr).status_code == 200


def test_patch_acl_changes_visibility_at_once(service, departments, admin):
    client, _ = service
    ids, keys = departments
    eng = as_key(client, keys["eng"])
    assert ids["hr"] not in _search_ids(client, eng, "salary budget")
    r = admin.patch(f"/v1/documents/{ids['hr']}", json={"acl": ["group:hr", "group:eng"]})
    assert r.status_code == 200 and r.json()["acl"] == ["group:hr", "group:eng"]
    assert ids["hr"] in _search_ids(client, eng, "salary budget")
    assert client.get(f"/v1/documents/{ids['hr']}/chunks", headers=eng).status_code == 200
    admin.patch(f"/v1/documents/{ids['hr']}", json={"acl": ["group:hr"]})
    assert ids["hr"] not in _search_ids(client, eng, "salary budget")


def _search_ids(client, headers, query):
    r = client.post("/v1/search", json={"query": query, "top_k": 20}, headers=headers)
    return {h["document_id"] for h in r.json()["results"]}


def test_conversation_belongs_to_its_principals(service, departments):
    client, _ = service
    _, keys = departments
    conv = client.post("/v1/chat", json={"message": "salary budget?"}, headers=as_key(client, keys["hr"])).json()
    r = client.post(
        "/v1/chat",
        json={"message": "more?", "conversation_id": conv["conversation_id"]},
        headers=as_key(client, keys["eng"]),
    )
    assert r.status_code == 404


# --- the authorization matrix -------------------------------------------------------------------------
ENDPOINTS = {
    # name: (method, path template, json body)
    "list": ("get", "/v1/documents", None),
    "get": ("get", "/v1/documents/{doc}", None),
    "chunks": ("get", "/v1/documents/{doc}/chunks", None),
    "search": ("post", "/v1/search", {"query": "bonus"}),
    "search_corp": ("post", "/v1/search", {"query": "bonus", "collection": "corp"}),
    "chat": ("post", "/v1/chat", {"message": "bonus?"}),
    "upload": ("post", "/v1/documents", {"text": "A new memo about parking.", "collection": "corp"}),
    "patch": ("patch", "/v1/documents/{doc}", {"metadata": {"x": 1}}),
    "delete_unknown": ("delete", "/v1/documents/0123456789abcdef0123456789abcdef", None),
    "keys": ("get", "/v1/keys", None),
    "audit": ("get", "/v1/audit", None),
    "collection": ("put", "/v1/collections/corp", {"redact_pii": False}),
}
ALL_401 = dict.fromkeys(ENDPOINTS, 401)
ADMIN_ONLY = {"keys": 403, "audit": 403, "collection": 403}
# The document in the paths is HR's (acl group:hr, collection corp).
EXPECTED = {
    "none": ALL_401,
    "wrong": ALL_401,
    "revoked": ALL_401,
    # read-only key without group:hr: the HR document does not exist for it; writes need the write scope
    "read_only_without_principal": {
        "list": 200,
        "get": 404,
        "chunks": 404,
        "search": 200,
        "search_corp": 200,
        "chat": 200,
        "upload": 403,
        "patch": 403,
        "delete_unknown": 403,
        **ADMIN_ONLY,
    },
    # key for collection misc only: corp is absent when named (404), writing into it is refused (403)
    "other_collection": {
        "list": 200,
        "get": 404,
        "chunks": 404,
        "search": 200,
        "search_corp": 404,
        "chat": 200,
        "upload": 403,
        "patch": 404,
        "delete_unknown": 404,
        **ADMIN_ONLY,
    },
    "impersonate_without_scope": dict.fromkeys(ENDPOINTS, 403),
    "impersonating_hr": {
        "list": 200,
        "get": 200,
        "chunks": 200,
        "search": 200,
        "search_corp": 200,
        "chat": 200,
        "upload": 403,
        "patch": 403,
        "delete_unknown": 403,
        **ADMIN_ONLY,
    },
    "impersonating_other": {
        "list": 200,
        "get": 404,
        "chunks": 404,
        "search": 200,
        "search_corp": 200,
        "chat": 200,
        "upload": 403,
        "patch": 403,
        "delete_unknown": 403,
        **ADMIN_ONLY,
    },
    "hr": {
        "list": 200,
        "get": 200,
        "chunks": 200,
        "search": 200,
        "search_corp": 200,
        "chat": 200,
        "upload": 201,
        "patch": 200,
        "delete_unknown": 404,
        **ADMIN_ONLY,
    },
    "admin": {**dict.fromkeys(ENDPOINTS, 200), "upload": 201, "delete_unknown": 404},
}


def test_authorization_matrix(service, departments, admin):
    client, _ = service
    ids, keys = departments
    revoked = make_key(admin, name="gone", scopes=["read", "write"], principals=["group:hr"])
    revoked_id = next(k["id"] for k in admin.get("/v1/keys").json()["items"] if k["name"] == "gone")
    assert admin.delete(f"/v1/keys/{revoked_id}").status_code == 204
    callers = {
        "none": {},
        "wrong": as_key(client, "ks_not-a-real-key"),
        "revoked": as_key(client, revoked),
        "read_only_without_principal": as_key(client, keys["nobody"]),
        "other_collection": as_key(client, keys["other"]),
        "impersonate_without_scope": as_key(client, keys["hr"], **{"X-On-Behalf-Of": "group:hr"}),
        "impersonating_hr": as_key(client, keys["app"], **{"X-On-Behalf-Of": "user:bob,group:hr"}),
        "impersonating_other": as_key(client, keys["app"], **{"X-On-Behalf-Of": "user:bob,group:sales"}),
        "hr": as_key(client, keys["hr"]),
        "admin": as_key(client, ADMIN),
    }
    failures = []
    for who, headers in callers.items():
        for name, (method, template, body) in ENDPOINTS.items():
            path = template.format(doc=ids["hr"])
            if name == "upload":  # new content for each caller, so that none is a duplicate
                body = {**body, "text": f"A new memo about parking, written by {who}."}
            kwargs = {"json": body} if body is not None else {}
            r = getattr(client, method)(path, headers=headers, **kwargs)
            if r.status_code != EXPECTED[who][name]:
                failures.append((who, name, r.status_code, EXPECTED[who][name], r.text[:100]))
            if r.status_code >= 400:
                assert r.headers["content-type"].startswith(PROBLEM), (who, name)
            assert ADMIN not in r.text and all(k not in r.text for k in keys.values())
            if (
                who in ("read_only_without_principal", "other_collection", "impersonating_other")
                and r.status_code == 200
            ):
                assert ids["hr"] not in r.text, (who, name)
    assert not failures, "\n".join(map(str, failures))


def test_keys_are_listed_without_secrets_and_revocation_is_immediate(service, admin):
    client, _ = service
    secret = make_key(admin, name="temp", scopes=["read"], principals=["user:t"])
    listing = admin.get("/v1/keys").json()["items"]
    assert secret not in json.dumps(listing)
    key = next(k for k in listing if k["name"] == "temp")
    assert secret.startswith(key["prefix"])
    assert client.get("/v1/documents", headers=as_key(client, secret)).status_code == 200
    assert admin.delete(f"/v1/keys/{key['id']}").status_code == 204
    assert client.get("/v1/documents", headers=as_key(client, secret)).status_code == 401


def test_bad_key_requests(admin):
    for body in (
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["read"], "principals": ["no-colon"]},
    ):
        r = admin.post("/v1/keys", json=body)
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert admin.delete("/v1/keys/doesnotexist").status_code == 404
    r = admin.post("/v1/search", json={"query": "x"}, headers={"X-On-Behalf-Of": "not a principal"})
    assert r.status_code == 403


def test_audit_records_actions_without_secrets_or_text(service, departments, admin):
    client, _ = service
    ids, keys = departments
    client.post("/v1/search", json={"query": "salary"}, headers=as_key(client, keys["hr"]))
    client.post("/v1/chat", json={"message": "salary?"}, headers=as_key(client, keys["hr"]))
    client.get(f"/v1/documents/{ids['eng']}/chunks", headers=as_key(client, keys["hr"]))
    admin.delete(f"/v1/documents/{ids['public']}")
    events = admin.get("/v1/audit", params={"limit": 1000}).json()["items"]
    actions = {e["action"] for e in events}
    assert {"ingest", "search", "chat", "delete", "key.create"} <= actions
    hr_key_id = next(k["id"] for k in admin.get("/v1/keys").json()["items"] if k["name"] == "hr")
    search = next(e for e in events if e["action"] == "search" and e["key_id"] == hr_key_id)
    assert search["principals"] == ["group:hr"] and search["status"] == 200
    assert ids["hr"] in search["target_ids"]
    deleted = next(e for e in events if e["action"] == "delete")
    assert deleted["target_ids"] == [ids["public"]] and deleted["status"] == 204
    dump = json.dumps(events)
    for secret in (ADMIN, *keys.values(), HR_TEXT, "salary budget"):
        assert secret not in dump
    only_search = admin.get("/v1/audit", params={"action": "search"}).json()["items"]
    assert only_search and {e["action"] for e in only_search} == {"search"}


def test_rate_limit_is_429_with_retry_after(settings, embedder):
    limited = settings.model_copy(update={"admin_key": SecretStr(ADMIN), "rate_limit_per_minute": 3})
    container = build_container(limited, embedder=embedder)
    with TestClient(create_app(container=container), base_url="http://localhost") as client:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        statuses = [client.get("/v1/documents", headers=headers).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = client.get("/v1/documents", headers=headers)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert client.get("/healthz").status_code == 200  # health is never limited
    container.close()


def test_pii_is_redacted_before_storage_when_the_collection_asks(admin):
    assert admin.put("/v1/collections/pii", json={"redact_pii": True}).json() == {"name": "pii", "redact_pii": True}
    text = (
        "Contact Hanako at hanako.sato@example.co.jp or 090-1234-5678. "
        "Card 4111 1111 1111 1111. マイナンバーは 1234 5678 9018 です。"
    )
    doc = admin.post("/v1/documents", json={"text": text, "collection": "pii"}).json()
    assert doc["redactions"] == 4
    chunks = " ".join(c["text"] for c in admin.get(f"/v1/documents/{doc['id']}/chunks").json()["items"])
    for secret in ("hanako.sato@example.co.jp", "090-1234-5678", "4111 1111 1111 1111", "1234 5678 9018"):
        assert secret not in chunks
    assert "[EMAIL]" in chunks and "[MY_NUMBER]" in chunks
    hits = admin.post("/v1/search", json={"query": "hanako.sato@example.co.jp", "mode": "keyword"}).json()["results"]
    assert all("hanako.sato" not in h["text"] for h in hits)
    plain = admin.post("/v1/documents", json={"text": text, "collection": "plain"}).json()
    assert plain["redactions"] is None


def test_write_to_another_collection_is_403(service, departments):
    client, _ = service
    _, keys = departments
    r = client.post(
        "/v1/documents", json={"text": "x y z", "collection": "corp"}, headers=as_key(client, keys["other"])
    )
    assert r.status_code == 403
    r = client.post(
        "/v1/documents", json={"text": "x y z", "collection": "misc"}, headers=as_key(client, keys["other"])
    )
    assert r.status_code == 201
