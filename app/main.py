"""create_app(settings): the lifespan builds the container once; routers and the error handler are mounted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from app.api import admin, chat, documents, health, jobs, metrics, page, problems, search, sources
from app.api.deps import require_schema
from app.api.schemas import TextDocumentCreate
from app.container import Container, build_container
from app.core import observability
from app.core.config import Settings

DESCRIPTION = """
Ingest documents, search them (keyword BM25, semantic vectors, or hybrid with reciprocal rank fusion) and
chat with them: answers cite the passages they rest on, and say so when the documents do not cover a question.

Authenticate with `Authorization: Bearer <key>`. Errors are RFC 9457 `application/problem+json`.

The default local chat model is **extractive**: it answers with sentences quoted from the retrieved passages,
each cited as [n]; it does not compose new text.
"""


def create_app(
    settings: Settings | None = None, container: Container | None = None, *, close_container: bool = False
) -> FastAPI:
    """Build the app. With ``container`` the caller's container is used (closed at shutdown only when
    ``close_container``); without, the lifespan builds one from settings and closes it."""
    settings = settings or (container.settings if container else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None or close_container
        app.state.container = container or build_container(settings)
        app.state.container.observers.attach(app.state.metrics)
        app.state.metrics.watch_jobs(app.state.container.ingest.active_job_counts)
        app.state.container.start_workers()
        try:
            yield
        finally:
            app.state.container.observers.detach(app.state.metrics)
            if owned:
                app.state.container.close()
            if app.state.tracer_provider is not None:  # flush the last spans
                app.state.tracer_provider.shutdown()

    app = FastAPI(
        # Operation ids are the route functions' names (upload_document, search, ...): stable for generated clients.
        generate_unique_id_function=lambda route: route.name,
        title="knowledge-search",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "documents", "description": "Upload, list and delete documents."},
            {"name": "jobs", "description": "Ingest jobs: status and progress."},
            {"name": "search", "description": "Hybrid keyword + vector search."},
            {"name": "chat", "description": "Grounded answers with citations."},
            {"name": "admin", "description": "API keys, collection settings and the audit trail (admin scope)."},
            {"name": "health", "description": "Liveness and readiness."},
        ],
    )
    if container is not None:
        app.state.container = container
    app.state.metrics = observability.Metrics()
    problems.install(app)
    observability.install(app, settings, app.state.metrics)
    app.include_router(health.router)
    for module in (documents, jobs, search, chat, admin, sources):
        # runs before the route's own dependencies (authentication reads the database too)
        app.include_router(module.router, dependencies=[Depends(require_schema)])
    metrics.install(app)  # /metrics
    page.install(app)  # the page at / and its static files
    logging.getLogger("app").setLevel(settings.log_level)
    _register_schemas(app, TextDocumentCreate)
    return app


def _register_schemas(app: FastAPI, *models: type) -> None:
    """Add request models that routes read by hand (the upload body) to the OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                components[model.__name__] = model.model_json_schema(  # type: ignore[attr-defined]
                    ref_template="#/components/schemas/{model}"
                )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
