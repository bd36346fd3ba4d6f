"""Search: keyword (BM25), semantic (vector) or hybrid (both, fused as KS_FUSION or the request says)."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter

from app.api.deps import CallerDep, ContainerDep, source_read
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import SearchRequest, SearchResponse, SearchResult, filter_values

router = APIRouter(prefix="/v1", tags=["search"], responses=PROBLEM_RESPONSES)


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, container: ContainerDep, caller: CallerDep) -> SearchResponse:
    """Find the chunks that best answer a query, with their documents and source positions."""
    with container.audit.action(caller, "search") as audit:
        flt = caller.reading(body.collection, filter_values(body.filters))
        override = body.fusion.model_dump(exclude_none=True) if body.fusion else None
        fusion = replace(container.search.fusion, **override) if override is not None else None
        outcome = container.search.search(
            body.query, flt, body.top_k, body.mode, fusion=fusion, per_document=body.per_document
        )
        audit.targets = [h.chunk.document_id for h in outcome.hits]
    return SearchResponse(
        results=[
            SearchResult(
                chunk_id=h.chunk.chunk_id,
                document_id=h.chunk.document_id,
                title=h.chunk.title,
                text=h.chunk.text,
                score=h.score,
                metadata=h.chunk.metadata,
                source=source_read(h.chunk.source),
                collection=h.chunk.collection,
            )
            for h in outcome.hits
        ],
        took_ms=outcome.took_ms,
    )
