"""Docker cannot run here: check the container files for what `docker compose up` relies on."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_wires_app_to_postgres_and_opensearch():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"opensearch", "postgres", "migrate", "app"} <= set(services)
    app = services["app"]
    env = app["environment"]
    assert env["KS_VECTOR_STORE"] == "opensearch"
    assert env["KS_OPENSEARCH_URL"] == "http://opensearch:9200"
    assert env["KS_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["KS_DATABASE_URL"]
    assert app["ports"] == ["${KS_HTTP_PORT:-8000}:8000"]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["knowledge-search", "migrate"]
    for name in ("opensearch", "postgres", "app"):
        assert services[name]["healthcheck"]["test"], name
    assert set(compose["volumes"]) == {"opensearch-data", "postgres-data", "app-data"}


def test_dockerfile_is_multistage_non_root_with_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert "USER ks" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'CMD ["knowledge-search", "serve"' in text
