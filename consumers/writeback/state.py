"""Per target and asset: what we last wrote (fingerprint and field values), in the search store; `checked_at` is
the group's last pass over the asset (a read and a decision), `written_at` the last one that sent fields.

Kept in its own index of the store every worker already talks to (settings.index connection), not in worker
memory: a rebalance hands an asset's partition to another worker, and a restarted worker must still see what was
written. Chosen over a compacted Kafka topic because a stage has no Kafka client (the runner alone talks to Kafka)
and a topic would have to be read in full at every assignment; one `mget` per batch answers exactly the assets in
it. One partition of `validated` = one worker, so an asset's state has one writer at a time."""
from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

from domain.store.client import make_client
from domain.store.management import shard_settings

MAPPINGS = {"dynamic": False, "properties": {"target": {"type": "keyword"}, "asset_id": {"type": "keyword"},
                                             "fingerprint": {"type": "keyword"}, "written_at": {"type": "date"},
                                             "checked_at": {"type": "date"}}}
MAX_CONFLICTS = 20


def state_id(target: str, asset_id: str) -> str:
    return f"{target}:{asset_id}"


class StateStore:
    def __init__(self, settings: Any, client: Elasticsearch | None = None):
        self.index = settings.writeback.state_index
        self.index_settings = shard_settings(settings, side=True)  # one shard, the assets index's replicas
        self._owns = client is None
        self.client = client if client is not None else make_client(settings)
        self._ensured = False

    def ensure(self) -> None:
        if self._ensured:
            return
        if not self.client.indices.exists(index=self.index):
            try:
                self.client.indices.create(index=self.index, mappings=MAPPINGS,
                                           settings=self.index_settings)
            except Exception:  # noqa: BLE001 - another worker created it meanwhile
                if not self.client.indices.exists(index=self.index):
                    raise
        self._ensured = True

    def get_many(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        self.ensure()
        resp = self.client.mget(index=self.index, ids=list(dict.fromkeys(ids)))
        return {d["_id"]: d.get("_source") or {} for d in resp["docs"] if d.get("found")}

    def put(self, doc_id: str, doc: dict[str, Any]) -> None:
        self.ensure()
        self.client.index(index=self.index, id=doc_id, document=doc)

    def forget(self) -> None:
        self._ensured = False

    def close(self) -> None:
        if self._owns:
            self.client.close()
