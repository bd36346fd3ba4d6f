"""What a `write` key, a `read` key and a stranger can do to other people's data (issue 12), against a real
server on both backends. Each test is written as the attack was tried, and says what must come back."""

from __future__ import annotations

import json

from tests.helpers import PROBLEM
from tests.security.conftest import Api, new_key, texts, upload

SECRET = "Salary band for staff engineers: 14.2 million yen, reviewed every April."


def test_reupload_with_the_same_external_id_applies_the_new_acl(admin: Api, server, space: str):
    """Item 3: v1 public, v2 with acl [user:alice] → v2's text is alice's only, at once."""
    writer = new_key(admin, server, scopes=["read", "write"], principals=["user:alice"])
    bob = new_key(admin, server, scopes=["read"], principals=["user:bob"])
    v1 = upload(writer, "Draft: the offsite is in Kyoto.", space, external_id="memo-7")
    assert v1.status_code == 201
    v2 = upload(writer, SECRET, space, external_id="memo-7", acl=["user:alice"])
    assert v2.status_code == 200 and v2.json()["id"] == v1.json()["id"]
    assert v2.json()["acl"] == ["user:alice"]
    assert texts(bob, "salary band", space) == []
    assert texts(writer, "salary band", space) == [SECRET]
    # metadata set by an upload is applied with it; an upload that leaves acl out keeps the document's own
    v3 = upload(writer, SECRET + " Approved.", space, external_id="memo-7", metadata={"status": "final"})
    assert v3.status_code == 200 and v3.json()["acl"] == ["user:alice"] and v3.json()["metadata"] == {"status": "final"}
    assert texts(bob, "salary band", space) == []
    # multipart works the same way, and an explicit empty acl opens the document up
    opened = writer.post(
        "/v1/documents",
        files={"file": ("memo.txt", SECRET.encode())},
        data={"collection": space, "external_id": "memo-7", "acl": "[]"},
    )
    assert opened.status_code == 200 and opened.json()["acl"] is None
    assert texts(bob, "salary band", space) == [SECRET]


def test_no_oracle_for_documents_the_caller_cannot_read(admin: Api, server, space: str):
    """Item 10: uploading a guessed text, or naming a hidden external_id, tells a caller nothing."""
    hr = new_key(admin, server, scopes=["read", "write"], principals=["group:hr"])
    eve = new_key(admin, server, scopes=["read", "write"], principals=["user:eve"])
    secret = upload(hr, SECRET, space, acl=["group:hr"], external_id="salaries")
    assert secret.status_code == 201
    # the same text as a hidden document: a new document of eve's, exactly as if nothing were there
    guess = upload(eve, SECRET, space)
    assert guess.status_code == 201 and guess.json()["id"] != secret.json()["id"]
    guess_same_acl = upload(eve, SECRET, space, acl=["group:hr"])
    assert guess_same_acl.status_code == 201 and guess_same_acl.json()["id"] != secret.json()["id"]
    # the hidden document's external_id: also a new document, never a 404 naming the hidden one
    named = upload(eve, "my own notes", space, external_id="salaries")
    assert named.status_code == 201 and secret.json()["id"] not in named.text
    # and the hidden document is untouched
    doc = hr.get(f"/v1/documents/{secret.json()['id']}").json()
    assert (
        doc["acl"] == ["group:hr"]
        and doc["external_id"] == "salaries"
        and doc["updated_at"] == secret.json()["updated_at"]
    )
    chunks = hr.get(f"/v1/documents/{secret.json()['id']}/chunks").json()["items"]
    assert [c["text"] for c in chunks] == [SECRET]
    # the same upload again by the same key is idempotent (200), without revealing anyone else's
    again = upload(eve, SECRET, space)
    assert again.status_code == 200 and again.json()["id"] == guess.json()["id"]
    for path in (f"/v1/documents/{secret.json()['id']}", f"/v1/documents/{secret.json()['id']}/chunks"):
        assert eve.get(path).status_code == 404
    assert eve.put(f"/v1/documents/{secret.json()['id']}", json={"text": "x"}).status_code == 404
    assert eve.patch(f"/v1/documents/{secret.json()['id']}", json={"acl": None}).status_code == 404
    assert eve.delete(f"/v1/documents/{secret.json()['id']}").status_code == 404


def test_reserved_external_ids_are_refused(admin: Api, server, space: str):
    """Item 2: the s3:// and file:// spaces belong to the sources; a client may not write into them."""
    eve = new_key(admin, server, scopes=["read", "write"], principals=["user:eve"])
    for planted in ("s3://corp-hr-private/hr/salaries.txt", "file:///srv/hr/salaries.txt", "S3://corp/x"):
        r = upload(eve, "placeholder", space, external_id=planted, acl=["user:eve"])
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
        assert "external_id" in r.json()["detail"]


def test_non_finite_numbers_in_metadata_are_refused(admin: Api, server, space: str):
    """Item 6: NaN/Infinity once broke every filtered search of a collection; now 422 on every way in."""
    writer = new_key(admin, server, scopes=["read", "write"])
    ok = upload(writer, "Quarterly numbers are published in May.", space, metadata={"score": 1.5})
    assert ok.status_code == 201
    raw = '{"text": "x", "collection": "%s", "metadata": {"score": NaN}}' % space
    for body in (raw, raw.replace("NaN", "Infinity"), raw.replace("NaN", "-Infinity")):
        r = writer.post("/v1/documents", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    r = writer.post(
        "/v1/documents",
        files={"file": ("n.txt", b"numbers")},
        data={"collection": space, "metadata": '{"score": NaN}'},
    )
    assert r.status_code == 422, r.text
    patch = writer.patch(
        f"/v1/documents/{ok.json()['id']}",
        content='{"metadata": {"score": Infinity}}',
        headers={"content-type": "application/json"},
    )
    assert patch.status_code == 422, patch.text
    search = writer.post(
        "/v1/search",
        content='{"query": "numbers", "filters": {"score": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert search.status_code == 422
    # nothing broke: filtered search and chat of the collection still answer
    r = writer.post("/v1/search", json={"query": "quarterly numbers", "collection": space, "filters": {"score": 1.5}})
    assert r.status_code == 200 and len(r.json()["results"]) == 1
    assert (
        writer.post("/v1/chat", json={"message": "When are numbers published?", "collection": space}).status_code == 200
    )


def test_a_conversation_belongs_to_its_key_and_user(admin: Api, server, space: str):
    """Item 7: carol (group:sales) could continue bob's conversation and read his earlier answer."""
    upload(admin, SECRET, space, acl=["user:bob"])
    portal = new_key(admin, server, scopes=["read", "impersonate"], principals=[])
    other_app = new_key(admin, server, scopes=["read", "impersonate"], principals=[])
    bob = {"X-On-Behalf-Of": "user:bob,group:sales"}
    carol = {"X-On-Behalf-Of": "user:carol,group:sales"}
    first = portal.post("/v1/chat", json={"message": "What is the salary band?", "collection": space}, headers=bob)
    assert first.status_code == 200 and first.json()["grounded"], first.text
    conv = first.json()["conversation_id"]
    for api, headers in ((portal, carol), (other_app, bob), (admin, {})):
        r = api.post("/v1/chat", json={"message": "And last year?", "conversation_id": conv}, headers=headers)
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM), r.text
        assert "14.2" not in r.text
    again = portal.post("/v1/chat", json={"message": "And the review month?", "conversation_id": conv}, headers=bob)
    assert again.status_code == 200
    # a key with no principals continues its own conversations
    plain = new_key(admin, server, scopes=["read"], principals=[])
    own = plain.post("/v1/chat", json={"message": "Where is the offsite?"}).json()["conversation_id"]
    assert plain.post("/v1/chat", json={"message": "When?", "conversation_id": own}).status_code == 200


def test_refused_requests_are_in_the_audit(admin: Api, server, space: str):
    """Item 11: bad keys (401), refused impersonation and scopes (403) and invalid searches (422) are recorded,
    with the client's address and the request id, never the key or the query."""
    reader = new_key(admin, server, scopes=["read"], principals=["user:dan"])
    stranger = Api(server.url, "ks_not-a-key-at-all")
    tries = {
        "bad-key": (stranger, "/v1/search", {"query": "salary"}, {}),
        "impersonation": (reader, "/v1/search", {"query": "salary"}, {"X-On-Behalf-Of": "user:eve"}),
        "scope": (reader, "/v1/documents", {"text": "salary", "collection": space}, {}),
        "validation": (reader, "/v1/search", {"query": "salary", "top_k": 10_000}, {}),
    }
    statuses = {}
    for name, (api, path, body, headers) in tries.items():
        rid = f"{name}-{space}"
        statuses[name] = api.post(path, json=body, headers={**headers, "X-Request-ID": rid}).status_code
    assert statuses == {"bad-key": 401, "impersonation": 403, "scope": 403, "validation": 422}
    events = {e["request_id"]: e for e in admin.get("/v1/audit", params={"limit": 500}).json()["items"]}
    for name, status in statuses.items():
        event = events[f"{name}-{space}"]
        assert event["status"] == status and event["client_addr"] == "127.0.0.1", event
        assert "ks_not-a-key" not in json.dumps(event) and "salary" not in json.dumps(event)
    assert events[f"bad-key-{space}"]["action"] == "search" and events[f"bad-key-{space}"]["key_id"] is None
    assert events[f"scope-{space}"]["action"] == "ingest" and events[f"scope-{space}"]["key_id"]


def test_replace_takes_uploads_as_large_as_upload_does(admin: Api, server, space: str):
    """Item 12: PUT was capped at KS_MAX_BODY_MB (1 MiB) while POST took KS_MAX_UPLOAD_MB."""
    writer = new_key(admin, server, scopes=["read", "write"])
    doc = upload(writer, "A short note.", space).json()
    # over 1 MiB on the wire, little text to embed: a page with a large script (parsers drop scripts)
    big = (
        "<html><body><p>The travel policy has three exceptions.</p><script>"
        + "x" * (1300 * 1024)
        + "</script></body></html>"
    )
    r = writer.put(f"/v1/documents/{doc['id']}", files={"file": ("big.html", big.encode())})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["size_bytes"] > 1024 * 1024


def test_collection_names_are_checked_the_same_way_everywhere(admin: Api, server, space: str):
    """Item 12: multipart accepted collection="hr\\n" where every other path refused it."""
    writer = new_key(admin, server, scopes=["read", "write"])
    for name in ("hr\n", "hr\r\n", " hr", "h r", "../hr"):
        r = writer.post("/v1/documents", files={"file": ("a.txt", b"text")}, data={"collection": name})
        assert r.status_code in (400, 422) and r.headers["content-type"].startswith(PROBLEM), (name, r.text)
        r = writer.post("/v1/documents", json={"text": "text", "collection": name})
        assert r.status_code in (400, 422), name
