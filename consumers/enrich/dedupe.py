"""Dedupe before calling a model: an exact content-hash match, or a pHash within `dedupe_max_distance` bits, of
an already-enriched asset reuses that asset's enrichment and provenance and skips the provider.

Near-duplicate lookup uses LSH bands: the 64-bit pHash is cut into 8 bands of 8 bits ("{i}:{byte:02x}", as
preprocess writes them to Hashes.phash_bands). Two hashes within distance d <= 7 share at least 8 - d bands, so
a candidate query on "any band equal" finds every true match; the exact Hamming distance is then computed on
the candidates.

Implementations:
- ElasticsearchDedupeIndex: queries the assets read alias (<index.index>-read), so it works across partitions,
  replicas and restarts, with an in-process LRU in front (copies seen by this worker hit without a round trip,
  including copies enriched but not yet indexed).
- InMemoryDedupeIndex: the LRU alone (bench, tests, single-process runs).

Near rule: pHash distance <= max_distance, or pHash distance <= confirm_distance AND dHash distance <=
max_distance (two independent perceptual hashes agreeing; catches slight crops, which move pHash by 6-10 bits,
without accepting a lone pHash that far). Candidates beyond 7 bits are found only if they share a band, which is
likely but not guaranteed.

Known race: two copies enriched at the same moment (different partitions/workers, neither indexed yet) both
miss and both call the provider. Dedupe saves money; it never loses or merges an asset.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from streams import metrics
from streams.records import to_ms

log = logging.getLogger(__name__)

BANDS = 8


def phash_bands(phash_hex: str) -> list[str]:
    """'{i}:{byte:02x}' for the 8 bytes of a 64-bit pHash (big-endian), like preprocess."""
    value = int(phash_hex, 16)
    return [f"{i}:{(value >> (8 * (BANDS - 1 - i))) & 0xFF:02x}" for i in range(BANDS)]


def hamming(a_hex: str, b_hex: str) -> int:
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


@dataclass
class DedupeMatch:
    asset_id: str
    kind: str
    """'exact' (same content sha256) | 'near' (pHash within the distance)"""
    distance: int
    enrichment: dict[str, Any]
    provenance: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class DedupeIndex(Protocol):
    async def lookup(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None, *,
                     tenant: str | None = None, exclude_asset_id: str | None = None,
                     dhash_hex: str | None = None) -> DedupeMatch | None: ...

    async def remember(self, asset_id: str, sha256: str | None, phash: str | None, bands: list[str] | None,
                       enrichment: dict[str, Any], provenance: list[dict[str, Any]], *,
                       tenant: str | None = None, dhash: str | None = None) -> None: ...

    async def review(self, asset_id: str) -> dict[str, Any] | None:
        """What people decided about the asset so far (its HumanReview in the index), or None."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class _Entry:
    asset_id: str
    sha256: str | None
    phash: str | None
    bands: list[str]
    tenant: str | None
    enrichment: dict[str, Any]
    provenance: list[dict[str, Any]]
    dhash: str | None = None


def _best(candidates: list[_Entry], sha256: str | None, phash_hex: str | None, max_distance: int,
          tenant: str | None, exclude: str | None, dhash_hex: str | None = None,
          confirm_distance: int | None = None) -> DedupeMatch | None:
    confirm = max_distance if confirm_distance is None else max(confirm_distance, max_distance)
    best: DedupeMatch | None = None
    for e in candidates:
        if e.asset_id == exclude or (tenant is not None and e.tenant is not None and e.tenant != tenant):
            continue
        if not e.enrichment:
            continue
        if sha256 and e.sha256 == sha256:
            return DedupeMatch(e.asset_id, "exact", 0, copy.deepcopy(e.enrichment), copy.deepcopy(e.provenance))
        if phash_hex and e.phash:
            d = hamming(phash_hex, e.phash)
            ok = d <= max_distance or (d <= confirm and dhash_hex is not None and e.dhash is not None
                                       and hamming(dhash_hex, e.dhash) <= max_distance)
            if ok and (best is None or d < best.distance):
                best = DedupeMatch(e.asset_id, "near", d, copy.deepcopy(e.enrichment), copy.deepcopy(e.provenance))
    return best


class InMemoryDedupeIndex:
    """LRU of recently enriched assets with a band index for near lookups. One process only."""

    def __init__(self, max_distance: int = 6, max_size: int = 10_000, confirm_distance: int | None = None):
        self.max_distance = max_distance
        self.confirm_distance = confirm_distance
        self.max_size = max_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_sha: dict[str, set[str]] = {}
        self._by_band: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup_sync(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None, *,
                    tenant: str | None = None, exclude_asset_id: str | None = None,
                    dhash_hex: str | None = None) -> DedupeMatch | None:
        ids: set[str] = set()
        if sha256:
            ids |= self._by_sha.get(sha256, set())
        if phash_hex:
            for b in bands or phash_bands(phash_hex):
                ids |= self._by_band.get(b, set())
        cands = [self._entries[i] for i in ids if i in self._entries]
        m = _best(cands, sha256, phash_hex, self.max_distance, tenant, exclude_asset_id, dhash_hex,
                  self.confirm_distance)
        if m is not None:
            self._entries.move_to_end(m.asset_id)
        return m

    async def lookup(self, sha256, phash_hex, bands, *, tenant=None, exclude_asset_id=None, dhash_hex=None):
        return self.lookup_sync(sha256, phash_hex, bands, tenant=tenant, exclude_asset_id=exclude_asset_id,
                                dhash_hex=dhash_hex)

    def remember_sync(self, asset_id: str, sha256: str | None, phash: str | None, bands: list[str] | None,
                      enrichment: dict[str, Any], provenance: list[dict[str, Any]], *,
                      tenant: str | None = None, dhash: str | None = None) -> None:
        self._forget(asset_id)
        bands = list(bands or (phash_bands(phash) if phash else []))
        self._entries[asset_id] = _Entry(asset_id, sha256, phash, bands, tenant, copy.deepcopy(enrichment),
                                         copy.deepcopy(provenance), dhash)
        if sha256:
            self._by_sha.setdefault(sha256, set()).add(asset_id)
        for b in bands:
            self._by_band.setdefault(b, set()).add(asset_id)
        while len(self._entries) > self.max_size:
            self._forget(next(iter(self._entries)))

    async def remember(self, asset_id, sha256, phash, bands, enrichment, provenance, *, tenant=None, dhash=None):
        self.remember_sync(asset_id, sha256, phash, bands, enrichment, provenance, tenant=tenant, dhash=dhash)

    def _forget(self, asset_id: str) -> None:
        e = self._entries.pop(asset_id, None)
        if e is None:
            return
        if e.sha256:
            s = self._by_sha.get(e.sha256)
            if s is not None:
                s.discard(asset_id)
                if not s:
                    del self._by_sha[e.sha256]
        for b in e.bands:
            s = self._by_band.get(b)
            if s is not None:
                s.discard(asset_id)
                if not s:
                    del self._by_band[b]

    def forget(self, asset_id: str) -> None:
        self._forget(asset_id)

    async def review(self, asset_id: str) -> dict[str, Any] | None:
        return None  # reviews live in the index; the sink applies them in any case

    async def aclose(self) -> None:
        pass


def _provenance_from_doc(p: dict[str, Any]) -> dict[str, Any]:
    """The index stores provenance with ISO timestamps and None fields dropped; back to the Avro shape."""
    ts = p.get("timestamp")
    if isinstance(ts, str):
        import datetime as dt
        ts = to_ms(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")))
    return {"task": p.get("task", ""), "provider": p.get("provider", ""), "model": p.get("model", ""),
            "model_version": p.get("model_version"), "prompt_id": p.get("prompt_id", ""),
            "prompt_version": p.get("prompt_version", ""), "prompt_hash": p.get("prompt_hash", ""),
            "request_id": p.get("request_id"), "timestamp": int(ts or 0),
            "input_tokens": int(p.get("input_tokens") or 0), "output_tokens": int(p.get("output_tokens") or 0),
            "latency_ms": float(p.get("latency_ms") or 0.0), "cost_usd": float(p.get("cost_usd") or 0.0),
            "reused_from": p.get("reused_from")}


class ElasticsearchDedupeIndex:
    """Looks up already-indexed assets in <index>-read; an InMemoryDedupeIndex in front.

    `client` is a sync elasticsearch.Elasticsearch (default: domain.store.client.make_client(settings), so
    auth/TLS/server_mode follow settings.index); calls run in a thread so the event loop never blocks. If the
    store is unreachable, lookups degrade to a miss (the provider is called; DEDUPE result="error") rather
    than stalling enrichment; searches time out after `timeout_s`, and after a failure the store is not asked
    again for `down_backoff_s` (the LRU still answers).
    """

    def __init__(self, settings: Any, client: Any = None, *, candidates: int = 50, timeout_s: float = 2.0,
                 down_backoff_s: float = 30.0):
        enrich = settings.enrich
        self.max_distance = enrich.dedupe_max_distance
        self.confirm_distance = enrich.dedupe_confirm_distance
        self.alias = f"{settings.index.index}-read"
        self.candidates = candidates
        self.lru = InMemoryDedupeIndex(enrich.dedupe_max_distance, enrich.dedupe_lru_size,
                                       enrich.dedupe_confirm_distance)
        if client is None:
            from domain.store.client import make_client
            client = make_client(settings)
        self.client = client
        self.timeout_s = timeout_s
        self.down_backoff_s = down_backoff_s
        self._down_until = 0.0

    def _query(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None,
               exclude_asset_id: str | None) -> dict[str, Any]:
        should: list[dict[str, Any]] = []
        if sha256:
            should.append({"term": {"hashes.sha256": {"value": sha256, "boost": 100.0}}})
        if phash_hex:
            # one clause per band so candidates sharing more bands score higher
            should += [{"term": {"hashes.phash_bands": b}} for b in (bands or phash_bands(phash_hex))]
        q: dict[str, Any] = {"bool": {"should": should, "minimum_should_match": 1}}
        if exclude_asset_id:
            q["bool"]["must_not"] = [{"ids": {"values": [exclude_asset_id]}}]
        return q

    def _search(self, sha256, phash_hex, bands, tenant, exclude_asset_id, dhash_hex=None) -> DedupeMatch | None:
        from elasticsearch import NotFoundError
        try:
            res = self.client.options(request_timeout=self.timeout_s).search(
                index=self.alias, query=self._query(sha256, phash_hex, bands, exclude_asset_id),
                size=self.candidates, source=["asset_id", "tenant", "hashes", "enrichment", "provenance"])
        except NotFoundError:  # no index yet: nothing enriched before
            return None
        cands = []
        for hit in res.get("hits", {}).get("hits", []):
            src = hit.get("_source") or {}
            hashes = src.get("hashes") or {}
            cands.append(_Entry(src.get("asset_id") or hit.get("_id"), hashes.get("sha256"), hashes.get("phash"),
                                list(hashes.get("phash_bands") or []), src.get("tenant"),
                                src.get("enrichment") or {},
                                [_provenance_from_doc(p) for p in src.get("provenance") or []],
                                hashes.get("dhash")))
        return _best(cands, sha256, phash_hex, self.max_distance, tenant, exclude_asset_id, dhash_hex,
                     self.confirm_distance)

    async def lookup(self, sha256, phash_hex, bands, *, tenant=None, exclude_asset_id=None, dhash_hex=None):
        m = self.lru.lookup_sync(sha256, phash_hex, bands, tenant=tenant, exclude_asset_id=exclude_asset_id,
                                 dhash_hex=dhash_hex)
        if m is not None and m.kind == "exact":
            return m
        if time.monotonic() < self._down_until:  # store recently unreachable: LRU only, no waiting
            if m is None:
                metrics.DEDUPE.labels("error").inc()
            return m
        try:
            remote = await asyncio.to_thread(self._search, sha256, phash_hex, bands, tenant, exclude_asset_id,
                                             dhash_hex)
        except Exception as e:  # store down: pay for a call rather than stall (see class doc)
            self._down_until = time.monotonic() + self.down_backoff_s
            metrics.DEDUPE.labels("error").inc()
            log.warning("dedupe lookup failed (%s); store lookups off for %.0f s, calling the model instead",
                        type(e).__name__, self.down_backoff_s)
            return m
        if remote is None:
            return m
        if m is None or (remote.kind, remote.distance) < (m.kind, m.distance) or remote.kind == "exact":
            return remote
        return m

    def _get_review(self, asset_id: str) -> dict[str, Any] | None:
        from elasticsearch import NotFoundError
        try:
            res = self.client.options(request_timeout=self.timeout_s).search(
                index=self.alias, query={"ids": {"values": [asset_id]}}, size=1, source=["review"])
        except NotFoundError:
            return None
        hits = res.get("hits", {}).get("hits", [])
        return (hits[0].get("_source") or {}).get("review") if hits else None

    async def review(self, asset_id: str) -> dict[str, Any] | None:
        """Never stalls enrichment: with the store down the record goes on without it (metric result="error"),
        and the index sink, which applies every review again before it writes, keeps the person's values."""
        if time.monotonic() < self._down_until:
            metrics.REVIEW_LOOKUPS.labels("skipped").inc()
            return None
        try:
            review = await asyncio.to_thread(self._get_review, asset_id)
        except Exception as e:  # noqa: BLE001
            self._down_until = time.monotonic() + self.down_backoff_s
            metrics.REVIEW_LOOKUPS.labels("error").inc()
            log.warning("review lookup failed (%s); the index sink still applies reviews", type(e).__name__)
            return None
        metrics.REVIEW_LOOKUPS.labels("found" if review else "none").inc()
        return review

    async def remember(self, asset_id, sha256, phash, bands, enrichment, provenance, *, tenant=None, dhash=None):
        # the index sink writes the document after validation; until then the LRU covers this worker
        self.lru.remember_sync(asset_id, sha256, phash, bands, enrichment, provenance, tenant=tenant, dhash=dhash)

    async def aclose(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
