"""A TLS proxy in front of a real OpenSearch, standing in for a managed cluster: it serves a certificate signed by a
CA made for the test, and either asks for basic auth or checks AWS SigV4 signatures (with botocore, against known
test credentials) the way Amazon OpenSearch Service (``es``) and Serverless (``aoss``) do. With ``serverless`` it
also refuses the APIs OpenSearch Serverless does not offer (``_refresh``, ``*_by_query``, ``_cluster/*``), so a
client that still calls them fails here as it would there."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ACCESS_KEY = "AKIAKSTESTEXAMPLE000"
SECRET_KEY = "ks-test-secret/K7MDENG/bPxRfiCYEXAMPLEKEY"
UNSUPPORTED_ON_SERVERLESS = ("/_refresh", "/_delete_by_query", "/_update_by_query", "/_cluster/")


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "knowledge-search test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def verify_sigv4(method: str, url: str, headers: dict[str, str], body: bytes, service: str, region: str) -> str | None:
    """None when the request carries a valid SigV4 signature by the test credentials for service/region, else why
    not. The signature is recomputed by botocore from exactly the headers the client says it signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "missing AWS4-HMAC-SHA256 authorization"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    key_id, date, cred_region, cred_service, terminal = parts["Credential"].split("/")
    if key_id != ACCESS_KEY:
        return f"unknown access key {key_id}"
    if (cred_region, cred_service, terminal) != (region, service, "aws4_request"):
        return f"credential scope {cred_region}/{cred_service} is not {region}/{service}"
    signed = parts["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    stamp = lower["x-amz-date"]
    when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    if abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > 300 or not stamp.startswith(date):
        return "request time too skewed"
    declared = lower.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 does not match the body"
    if service == "aoss" and declared is None:
        return "OpenSearch Serverless needs x-amz-content-sha256"
    request = AWSRequest(method=method, url=url, data=body, headers={h: lower[h] for h in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return None if expected == parts["Signature"] else "The request signature we calculated does not match"


class ManagedOpenSearch:
    """``with ManagedOpenSearch(upstream, certs, auth="basic"|"sigv4", ...) as proxy: proxy.url``"""

    def __init__(
        self,
        upstream: str,
        certs: tuple[Path, Path, Path],
        *,
        auth: str,
        username: str = "ks",
        password: str = "",
        service: str = "es",
        region: str = "us-west-2",
        serverless: bool = False,
    ) -> None:
        self.upstream, self.auth, self.service, self.region = upstream.rstrip("/"), auth, service, region
        self.serverless = serverless
        self.basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.accepted = 0
        self.rejected: list[str] = []
        self.refused_apis: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs[1], certs[2])
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._http = httpx.Client(timeout=60)

    def __enter__(self) -> ManagedOpenSearch:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


def _handler(proxy: ManagedOpenSearch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            if proxy.auth == "basic":
                if self.headers.get("Authorization") != proxy.basic:
                    proxy.rejected.append(self.path)
                    self._reply(401, b'{"error":"Unauthorized","status":401}')
                    return
            else:
                url = f"https://{self.headers.get('Host')}{self.path}"
                problem = verify_sigv4(self.command, url, headers, body, proxy.service, proxy.region)
                if problem is not None:
                    proxy.rejected.append(f"{self.path}: {problem}")
                    self._reply(403, json.dumps({"message": problem}).encode())
                    return
            if proxy.serverless and any(api in self.path for api in UNSUPPORTED_ON_SERVERLESS):
                proxy.refused_apis.append(self.path)
                self._reply(
                    404, json.dumps({"error": f"{self.path} is not supported by OpenSearch Serverless"}).encode()
                )
                return
            proxy.accepted += 1
            forward = {k: v for k, v in headers.items() if k.lower() in ("content-type", "content-encoding", "accept")}
            upstream = proxy._http.request(self.command, proxy.upstream + self.path, content=body, headers=forward)
            # the proxy re-sends the body it received; httpx has already decoded any compression
            self._reply(
                upstream.status_code, upstream.content, upstream.headers.get("content-type", "application/json")
            )

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

    return Handler
