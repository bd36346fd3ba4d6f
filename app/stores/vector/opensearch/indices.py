"""Alias and index management: the alias the service reads and writes, the concrete index behind it, the index
made for a re-index and the atomic move of the alias, and how healthy the index is."""

from __future__ import annotations

import time
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from app.core.errors import ConfigurationError, StoreUnavailable
from app.stores.vector.base import IndexInfo
from app.stores.vector.opensearch.schema import index_body, index_name, model_of


class Indices:
    def __init__(self, client: OpenSearch, alias: str, *, shards: int, replicas: int, serverless: bool = False) -> None:
        self._client, self.alias = client, alias
        self._shards, self._replicas, self._serverless = shards, replicas, serverless

    def body(self, info: IndexInfo) -> dict[str, Any]:
        if self._serverless:  # a collection places shards and replicas itself and refuses both settings
            return index_body(info, shards=None, replicas=None)
        return index_body(info, shards=self._shards, replicas=self._replicas)

    def ensure(self, info: IndexInfo) -> None:
        """Create the alias and its index when missing; refuse an index built by another embedding model."""
        concrete = index_name(self.alias, info)
        if not self._client.indices.exists(index=self.alias):
            body = self.body(info)
            body["aliases"] = {self.alias: {}}
            try:
                self._client.indices.create(index=concrete, body=body)
            except RequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise ConfigurationError(f"cannot create OpenSearch index {concrete!r}: {exc}") from exc
                # Another process won the race, or a half-finished re-index left it: point the alias at it.
                self._client.indices.put_alias(index=concrete, name=self.alias)
        mappings = self._client.indices.get_mapping(index=self.alias)
        # indices made before staged updates existed get the field (adding a field is allowed in place)
        # indices made before staged updates, or chunk context, existed get the fields (adding a field is allowed
        # in place; `knowledge-search reindex` fills the context of older chunks)
        self._client.indices.put_mapping(
            index=self.alias,
            body={"properties": {"live": {"type": "boolean"}, "context": {"type": "text", "analyzer": "whitespace"}}},
        )
        for name, body in mappings.items():
            found = model_of({name: body})
            model, dim = (found.embedding_model, found.dimension) if found else (None, None)
            if model != info.embedding_model or dim != info.dimension:
                raise ConfigurationError(
                    f"The OpenSearch index {self.alias!r} (index {name!r}) was built with embedding model "
                    f"{model!r} (dimension {dim}), but the service is configured for {info.embedding_model!r} "
                    f"(dimension {info.dimension}). Vectors from different models cannot be mixed: "
                    "set KS_EMBEDDING_MODEL back, or rebuild the index with `knowledge-search reindex`."
                )

    def concrete(self) -> list[str]:
        """The concrete indices behind the alias; empty when it does not exist yet."""
        if not self._client.indices.exists_alias(name=self.alias):
            return []
        return sorted(self._client.indices.get_alias(name=self.alias))

    def info(self) -> IndexInfo | None:
        if not self._client.indices.exists(index=self.alias):
            return None
        return model_of(self._client.indices.get_mapping(index=self.alias))

    def create_target(self, info: IndexInfo) -> str:
        """A new concrete index for ``info``, not behind the alias yet; returns its name."""
        name = index_name(self.alias, info)
        if self._client.indices.exists(index=name):
            # The same model again, or an index kept by --keep-old: never reuse it, take a new name.
            name = f"{name}-r{time.strftime('%Y%m%d%H%M%S')}"
        self._client.indices.create(index=name, body=self.body(info))
        return name

    def move_alias(self, target: str, *, delete_old: bool) -> list[str]:
        """Point the alias at ``target`` in one atomic ``_aliases`` call; returns the indices it left."""
        old = self.concrete()
        actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": self.alias}} for i in old]
        actions.append({"add": {"index": target, "alias": self.alias}})
        self._client.indices.update_aliases(body={"actions": actions})
        if delete_old and old:
            self._client.indices.delete(index=",".join(old))
        return old

    def drop(self) -> None:
        self._client.indices.delete(index=self.alias, ignore_unavailable=True)

    def health(self) -> str | None:
        """None when every shard copy of the index is assigned; "degraded: ..." when a replica is missing (an index
        still answers every query); StoreUnavailable when a primary is (some chunks cannot be read or written)."""
        if self._serverless:  # no cluster APIs on a collection: that the index answers is all there is to know
            if not self._client.indices.exists(index=self.alias):
                raise StoreUnavailable(f"the OpenSearch Serverless index {self.alias!r} does not exist")
            return None
        health = self._client.cluster.health(index=self.alias)
        status = health.get("status")
        if status == "red":
            raise StoreUnavailable(
                f"OpenSearch index {self.alias!r} is red: {health.get('unassigned_shards')} shard copies unassigned, "
                "a primary among them"
            )
        if status == "yellow":
            return (
                f"degraded: index {self.alias!r} is yellow ({health.get('unassigned_shards')} replica(s) unassigned, "
                f"{health.get('number_of_nodes')} node(s) in the cluster)"
            )
        return None
