"""The OpenSearch client, built from settings: one or several node URLs, TLS with the system's or a given CA
bundle, and basic auth or AWS SigV4 (Amazon OpenSearch Service ``es``, OpenSearch Serverless ``aoss``) signed by
opensearch-py's own signer with credentials from boto3's default chain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opensearchpy import OpenSearch

from app.core.errors import ConfigurationError

if TYPE_CHECKING:
    from app.core.config import Settings


def auth_kind(settings: Settings) -> str:
    return settings.opensearch_auth or ("basic" if settings.opensearch_username else "none")


def build_client(settings: Settings) -> OpenSearch:
    urls = settings.opensearch_urls
    kwargs: dict[str, Any] = {
        # Every node listed: requests go round the nodes, and one that fails (refused, timed out, 502/503/504) is
        # put aside for a while and the request retried on the next.
        "hosts": urls,
        "timeout": settings.opensearch_timeout_s,
        "max_retries": settings.opensearch_max_retries,
        "retry_on_timeout": True,
        "verify_certs": settings.opensearch_verify_certs,
        "ssl_show_warn": settings.opensearch_verify_certs,
        "http_compress": True,
    }
    if settings.opensearch_ca_bundle is not None:
        if not urls[0].startswith("https://"):
            raise ConfigurationError("KS_OPENSEARCH_CA_BUNDLE is set but KS_OPENSEARCH_URL is not https://")
        if not settings.opensearch_ca_bundle.is_file():
            raise ConfigurationError(
                f"KS_OPENSEARCH_CA_BUNDLE={settings.opensearch_ca_bundle} is not a file: give the PEM file of the "
                "certificate authority that signed the cluster's certificate"
            )
        kwargs["ca_certs"] = str(settings.opensearch_ca_bundle)
    kind = auth_kind(settings)
    if kind == "basic":
        if not settings.opensearch_username:
            raise ConfigurationError("KS_OPENSEARCH_AUTH=basic needs KS_OPENSEARCH_USERNAME and KS_OPENSEARCH_PASSWORD")
        password = settings.opensearch_password.get_secret_value() if settings.opensearch_password else ""
        kwargs["http_auth"] = (settings.opensearch_username, password)
    elif kind == "sigv4":
        kwargs["http_auth"] = _sigv4(settings)
        # The signature covers the body as sent; keep it uncompressed so what is signed is what goes out.
        kwargs["http_compress"] = False
    return OpenSearch(**kwargs)


def _sigv4(settings: Settings) -> Any:
    try:
        import boto3
        from opensearchpy import Urllib3AWSV4SignerAuth
    except ImportError as exc:  # boto3 comes with the bedrock/production extras
        raise ConfigurationError(
            "KS_OPENSEARCH_AUTH=sigv4 needs boto3: pip install 'knowledge-search[production]'"
        ) from exc
    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigurationError(
            "KS_OPENSEARCH_AUTH=sigv4 found no AWS credentials in boto3's default chain (environment, profile, "
            "container or instance role): give the service a role, or set AWS_PROFILE"
        )
    region = settings.opensearch_aws_region or settings.aws_region or session.region_name
    if not region:
        raise ConfigurationError(
            "KS_OPENSEARCH_AUTH=sigv4 needs a region: set KS_OPENSEARCH_AWS_REGION (or KS_AWS_REGION / AWS_REGION)"
        )
    # The signer asks the credentials object for a frozen copy on every request, so role credentials that
    # boto3 refreshes are picked up without a restart.
    return Urllib3AWSV4SignerAuth(credentials, region, settings.opensearch_aws_service)
