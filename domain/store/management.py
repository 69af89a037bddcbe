"""Index layout: a versioned concrete index `<base>-v<N>` behind a write alias `<base>-write` and a read alias
`<base>-read`. A mapping change = `migrate()`: create `<base>-v<N+1>`, copy (external versions kept), swap both
aliases in one atomic `_aliases` call, copy again what was written to the old index meanwhile.

Mappings are explicit and valid for Elasticsearch 8/9 and OpenSearch 2/3 (no ES-only types).
"""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, helpers

from domain.store.client import index_settings
from domain.store.mapping_version import MAPPING_VERSION

if TYPE_CHECKING:
    from domain.store.settings import IndexSettings

log = logging.getLogger(__name__)

VECTOR_FIELD = "text_vector"
PACKED_VECTOR_FIELD = "text_vector_b64"
"""vector_mode 'off': the vector as base64 of 384 little-endian float32 (_source only). Reading 20k of these is
~10x cheaper than 20k JSON float lists, which is what the in-process cosine of the embedded store needs."""
VECTOR_DIMS = 384
IMAGE_VECTOR_FIELD = "image_vector"
PACKED_IMAGE_VECTOR_FIELD = "image_vector_b64"
"""vector_mode 'off': the image vector as base64 of 1280 little-endian float16 (_source only: half the bytes of
float32, and cosine rankings do not change at that precision)."""
IMAGE_VECTOR_DIMS = 1280


def vector_field(mode: str) -> str:
    """Where the document's vector lives for a vector_mode."""
    return VECTOR_FIELD if mode in ("es", "opensearch") else PACKED_VECTOR_FIELD


def image_vector_field(mode: str) -> str:
    """Where the document's image vector lives for a vector_mode."""
    return IMAGE_VECTOR_FIELD if mode in ("es", "opensearch") else PACKED_IMAGE_VECTOR_FIELD

TEXT_ANALYZER = "folded_english"
"""The analyzer of every text field, at index and at query time alike (a match query analyzes with the field's
analyzer): the built-in `english` analyzer rebuilt as a custom one, as the Elasticsearch and OpenSearch docs show
it (standard tokenizer; possessive, lowercase, English stop words, Porter stemmer), with `asciifolding` after
lowercase, so accents and ligatures fold to ASCII on both sides ("Café" -> "cafe", "Zürich" -> "zurich"), and a
`pattern_replace` char filter that removes combining accents first, so decomposed (NFD) text folds the same.

One difference from the docs' recipe: the possessive ('s, ’s) is removed by a `pattern_replace` char filter before
the tokenizer, not by the `stemmer` filter with language `possessive_english`. osmem-server 0.1.6 (the embedded and
test store) builds that filter into a custom analyzer but then indexes and queries empty terms, so every query
matched every document; the char filter gives the same tokens ("Zürich’s" -> "zurich", "it's" -> "it", a stop
word; "O'Sullivan" stays one word) and works the same on Elasticsearch 8/9, OpenSearch 2/3 and osmem (Java and
RE2 regular expressions alike). tests/test_search.py proves the folding on osmem."""
ANALYSIS: dict[str, Any] = {
    "char_filter": {
        # the combining accents (U+0300-U+036F) of decomposed text, as macOS writes names and metadata (NFD:
        # "Cafe" + U+0301), which asciifolding leaves as separate characters: removed before the tokenizer, so
        # "Café" typed either way is "cafe" (trial 24b). The characters themselves, not \u escapes (RE2 has none)
        "combining_accents": {"type": "pattern_replace", "pattern": "[\u0300-\u036f]+", "replacement": ""},
        "english_possessive": {"type": "pattern_replace", "pattern": "([\\p{L}\\p{N}])['\u2019\uff07][sS]\\b",
                               "replacement": "$1"},
    },
    "filter": {
        "english_stop": {"type": "stop", "stopwords": "_english_"},
        "english_stemmer": {"type": "stemmer", "language": "english"},
    },
    "analyzer": {
        TEXT_ANALYZER: {"type": "custom", "char_filter": ["combining_accents", "english_possessive"], "tokenizer": "standard",
                        "filter": ["lowercase", "asciifolding", "english_stop", "english_stemmer"]},
    },
}

_KW = {"type": "keyword", "ignore_above": 1024}
_TEXT = {"type": "text", "analyzer": TEXT_ANALYZER, "fields": {"raw": {"type": "keyword", "ignore_above": 512}}}
_TEXT_ONLY = {"type": "text", "analyzer": TEXT_ANALYZER}
_DATE = {"type": "date"}
_OFF = {"type": "object", "enabled": False}

MAPPINGS: dict[str, Any] = {
    # unknown fields are kept in _source but not indexed: a newer writer never breaks an older index
    "dynamic": False,
    "_meta": {"assetstream_mapping_version": MAPPING_VERSION},
    "properties": {
        # identity and event
        "asset_id": {"type": "keyword"},
        "event_id": {"type": "keyword"},
        "event_type": {"type": "keyword"},
        "version": {"type": "long"},
        "tenant": {"type": "keyword"},
        "source_uri": {"type": "keyword", "ignore_above": 2048},
        "content_type": {"type": "keyword"},
        "uploader": {"type": "keyword"},
        "declared_license": _KW,
        "event_time": _DATE,
        "indexed_at": _DATE,
        "validated_at": _DATE,
        "pipeline_version": {"type": "keyword"},
        "product": {"properties": {"sku": {"type": "keyword"}, "category": _KW, "brand": _KW,
                                   "name": _TEXT}},
        # validation decision
        "status": {"type": "keyword"},
        "usage_flag": {"type": "keyword"},
        "reasons": _KW,
        # parts that timed out or failed on every attempt (domain/store/degraded.py; issue 21)
        "completeness": {"type": "keyword"},
        "degraded_parts": {"type": "keyword"},
        "degraded": _OFF,
        "decorative": {"type": "boolean"},
        # searchable text
        "title": _TEXT,
        "alt_text": _TEXT,
        "caption": _TEXT,
        "summary": _TEXT_ONLY,
        "visible_text": _TEXT_ONLY,
        "ocr_text": _TEXT_ONLY,
        "ocr_language": {"type": "keyword"},
        "ocr_confidence": {"type": "float"},
        "credit_text": _TEXT,
        "licensing": _KW,
        "creator": _TEXT,
        "copyright": _TEXT,
        "usage_terms": _TEXT_ONLY,
        "license_url": {"type": "keyword", "ignore_above": 2048},
        "embedded_keywords": _KW,
        # tags: exact 'facet:value' strings, per-facet values, and the labels as analyzed text
        "tags": {"type": "keyword"},
        "tag_labels": _TEXT_ONLY,
        "tag_synonyms": _TEXT_ONLY,
        "facets": {"type": "object", "dynamic": True},
        "tag_details": {"type": "nested", "properties": {
            "tag": {"type": "keyword"}, "facet": {"type": "keyword"}, "label": {"type": "keyword"},
            "score": {"type": "float"}, "source": {"type": "keyword"}}},
        "suggested_tags": {"type": "keyword"},
        "tag_suggestions": {"type": "keyword"},
        "model_tags": {"type": "keyword"},
        "taxonomy_version": {"type": "keyword"},
        "field_sources": _OFF,
        "model_suggestions": _OFF,
        # image facts, EXIF, place
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "format": {"type": "keyword"},
        "color_mode": {"type": "keyword"},
        "byte_size": {"type": "long"},
        "has_alpha": {"type": "boolean"},
        "orientation": {"type": "integer"},
        "exif": {"properties": {
            "make": _KW, "model": _KW, "lens": _KW, "capture_time": {"type": "keyword"},
            "exposure_time": {"type": "double"}, "f_number": {"type": "double"}, "iso": {"type": "integer"},
            "focal_length": {"type": "double"}, "gps_alt": {"type": "double"}}},
        "location": {"type": "geo_point"},
        "place": {"properties": {"city": _KW, "region": _KW, "country": _KW, "country_code": {"type": "keyword"}}},
        # video: the container's facts and each keyframe's time and text (ocr_text holds all keyframes' text)
        "media_type": {"type": "keyword"},
        "duration_s": {"type": "double"},
        "transcript": _TEXT_ONLY,
        "video": {"properties": {
            "container": {"type": "keyword"}, "codec": {"type": "keyword"}, "fps": {"type": "double"},
            "keyframes": {"properties": {"offset_s": {"type": "double"}, "ocr_text": _TEXT_ONLY,
                                         "phash": {"type": "keyword"}}}}},
        # signals
        "face_count": {"type": "integer"},
        "nsfw_score": {"type": "float"},
        "colors": {"type": "keyword"},
        # hashes (the enrich stage's dedupe looks up phash_bands)
        "hashes": {"properties": {"sha256": {"type": "keyword"}, "phash": {"type": "keyword"},
                                  "dhash": {"type": "keyword"}, "phash_bands": {"type": "keyword"}}},
        "duplicate_of": {"type": "keyword"},
        "duplicate_distance": {"type": "integer"},
        # duplicate families (consumers/index/families.py): the canonical member's id, the family's size
        "family_id": {"type": "keyword"},
        "family_size": {"type": "integer"},
        "family_canonical": {"type": "boolean"},
        # provenance and cost
        "provenance": {"type": "nested", "properties": {
            "task": {"type": "keyword"}, "provider": {"type": "keyword"}, "model": {"type": "keyword"},
            "model_version": {"type": "keyword"}, "prompt_id": {"type": "keyword"},
            "prompt_version": {"type": "keyword"}, "prompt_hash": {"type": "keyword"},
            "request_id": {"type": "keyword"}, "timestamp": _DATE, "input_tokens": {"type": "integer"},
            "output_tokens": {"type": "integer"}, "latency_ms": {"type": "double"},
            "cost_usd": {"type": "double"}, "degraded": {"type": "keyword"}}},
        "cost_usd": {"type": "double"},
        # the EnrichedAsset.enrichment record: stored for reuse (dedupe), not indexed
        "enrichment": _OFF,
        # MiniLM embedding of the document's text; its type depends on index.vector_mode (vector_mapping)
        "text_vector_model": {"properties": {"id": {"type": "keyword"}, "version": {"type": "keyword"},
                                             "field": {"type": "keyword"}}},
        # EfficientNet-Lite0 pooled features of the preview; image_vector's type depends on index.vector_mode
        "image_vector_model": {"properties": {"id": {"type": "keyword"}, "version": {"type": "keyword"},
                                              "field": {"type": "keyword"}}},
    },
    "dynamic_templates": [
        {"facet_values": {"path_match": "facets.*", "mapping": {"type": "keyword", "ignore_above": 256}}},
    ],
}


def vector_mapping(mode: str, dims: int = VECTOR_DIMS) -> dict[str, Any] | None:
    """A vector field (text_vector, image_vector) per store: Elasticsearch 8/9 dense_vector (cosine, indexed for
    kNN), OpenSearch 2/3 knn_vector (HNSW on the lucene engine: efficient filtering), or None = not mapped
    (dynamic: false keeps it in _source, unindexed: the embedded store has neither type)."""
    if mode == "es":
        return {"type": "dense_vector", "dims": dims, "index": True, "similarity": "cosine"}
    if mode == "opensearch":
        return {"type": "knn_vector", "dimension": dims,
                "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"}}
    return None


def mappings_for(settings: "Any") -> dict[str, Any]:
    s = index_settings(settings)
    vec = vector_mapping(s.vector_mode)
    if vec is None:
        return MAPPINGS
    return {**MAPPINGS, "properties": {**MAPPINGS["properties"], VECTOR_FIELD: vec,
                                       IMAGE_VECTOR_FIELD: vector_mapping(s.vector_mode, IMAGE_VECTOR_DIMS)}}


def shard_settings(settings: "Any", *, side: bool = False) -> dict[str, int]:
    """The configured shard and replica counts of the assets index; with `side`, of a side index the pipeline
    creates in the store (the enrich result cache and batch journal, the writeback state): one shard, the assets
    index's replicas, so a one-node store (`index.number_of_replicas: 0`) is green, not yellow (trial 26 F6). A side
    index made before keeps its settings: `PUT <index>/_settings {"index": {"number_of_replicas": 0}}` turns it
    green (docs/operations.md)."""
    s = index_settings(settings)
    return {"number_of_shards": 1 if side else s.number_of_shards, "number_of_replicas": s.number_of_replicas}


def index_body(settings: "Any") -> dict[str, Any]:
    s = index_settings(settings)
    body: dict[str, Any] = {**shard_settings(s), "analysis": ANALYSIS}
    if s.vector_mode == "opensearch":
        body["knn"] = True  # index.knn: required for knn_vector HNSW structures
    return {"settings": body, "mappings": mappings_for(s)}


def read_alias(settings: "Any") -> str:
    return f"{index_settings(settings).index}-read"


def write_alias(settings: "Any") -> str:
    return f"{index_settings(settings).index}-write"


def concrete_name(settings: "Any", version: int) -> str:
    return f"{index_settings(settings).index}-v{version}"


def _version_of(settings: "Any", name: str) -> int:
    m = re.fullmatch(re.escape(index_settings(settings).index) + r"-v(\d+)", name)
    if not m:
        raise ValueError(f"{name} is not a versioned index of {index_settings(settings).index}")
    return int(m.group(1))


def alias_targets(client: Elasticsearch, alias: str) -> list[str]:
    """Concrete indices behind an alias ([] if the alias does not exist)."""
    try:
        return sorted(client.indices.get_alias(name=alias).body.keys())
    except NotFoundError:
        return []


def current_index(client: Elasticsearch, settings: "Any") -> str | None:
    """The concrete index the write alias points at, or None."""
    targets = alias_targets(client, write_alias(settings))
    if len(targets) > 1:
        resp = client.indices.get_alias(name=write_alias(settings)).body
        targets = [i for i, a in resp.items() if a["aliases"][write_alias(settings)].get("is_write_index")] or targets
    return targets[-1] if targets else None


def mapping_version(client: Elasticsearch, index: str) -> int | None:
    """The assetstream mapping version recorded in the index's _meta (None if absent)."""
    body = client.indices.get_mapping(index=index).body
    meta = (next(iter(body.values()), {}).get("mappings") or {}).get("_meta") or {}
    value = meta.get("assetstream_mapping_version")
    return int(value) if value is not None else None


def ensure_index(client: Elasticsearch, settings: "Any", *, warn: bool = True) -> str:
    """Idempotent: make sure `<base>-write` and `<base>-read` point at a concrete `<base>-vN` (creating
    `<base>-v<initial_version>` with MAPPINGS if nothing exists). Returns the concrete index name. With `warn`,
    an index of another mapping version is logged with the advice to migrate (`migrate` itself passes False)."""
    s = index_settings(settings)
    current = current_index(client, s)
    if current is not None:
        if not alias_targets(client, read_alias(s)):
            client.indices.put_alias(index=current, name=read_alias(s))
        live = mapping_version(client, current) if warn else MAPPING_VERSION
        if live != MAPPING_VERSION:
            log.warning("%s has mapping version %s, this code writes version %s: run `assetstream index migrate`",
                        current, live, MAPPING_VERSION)
        return current
    name = concrete_name(s, s.initial_version)
    try:
        client.indices.create(index=name, **index_body(s),
                              aliases={read_alias(s): {}, write_alias(s): {"is_write_index": True}})
        log.info("created index %s behind %s and %s", name, write_alias(s), read_alias(s))
    except ApiError as e:
        if e.status_code != 400 or "already_exists" not in str(e.error):
            raise
        # another worker created it first; make sure the aliases are there
        actions: list[dict[str, Any]] = []
        if not alias_targets(client, write_alias(s)):
            actions.append({"add": {"index": name, "alias": write_alias(s), "is_write_index": True}})
        if not alias_targets(client, read_alias(s)):
            actions.append({"add": {"index": name, "alias": read_alias(s)}})
        if actions:
            client.indices.update_aliases(actions=actions)
    return current_index(client, s) or name


def _copy(client: Elasticsearch, s: "IndexSettings", source: str, dest: str, use_reindex: bool) -> dict[str, Any]:
    """Copy source -> dest keeping each document's version (version_type external: a newer document already
    in dest wins). Returns {method, total, copied, version_conflicts, failures}."""
    if use_reindex:
        try:
            r = client.options(request_timeout=max(s.request_timeout_s, 600.0)).reindex(
                source={"index": source, "size": s.migrate_batch_size},
                dest={"index": dest, "version_type": "external"},
                conflicts="proceed", wait_for_completion=True, refresh=True).body
            failures = r.get("failures") or []
            if failures:
                raise RuntimeError(f"reindex {source} -> {dest}: {len(failures)} failures, first: {failures[0]}")
            return {"method": "reindex", "total": r.get("total", 0),
                    "copied": r.get("created", 0) + r.get("updated", 0),
                    "version_conflicts": r.get("version_conflicts", 0)}
        except ApiError as e:
            if e.status_code not in (400, 404, 405, 501):
                raise
            log.warning("store has no usable _reindex (%s); copying with scan + bulk", e.status_code)
    total = copied = conflicts = 0
    failures: list[dict[str, Any]] = []

    def actions():
        nonlocal total
        for hit in helpers.scan(client, index=source, size=s.migrate_batch_size, version=True,
                                query={"query": {"match_all": {}}}):
            total += 1
            yield {"_op_type": "index", "_index": dest, "_id": hit["_id"], "version": hit["_version"],
                   "version_type": "external", "_source": hit["_source"]}

    for ok, item in helpers.streaming_bulk(client, actions(), chunk_size=s.migrate_batch_size,
                                           raise_on_error=False, max_retries=3):
        res = item["index"]
        if ok:
            copied += 1
        elif res.get("status") == 409:
            conflicts += 1
        else:
            failures.append(res)
    if failures:
        raise RuntimeError(f"copy {source} -> {dest}: {len(failures)} failures, first: {failures[0]}")
    client.indices.refresh(index=dest)
    return {"method": "scan+bulk", "total": total, "copied": copied, "version_conflicts": conflicts}


def _versions(client: Elasticsearch, s: "IndexSettings", index: str) -> dict[str, int]:
    """{_id: _version} of every document (ids only, no _source)."""
    return {h["_id"]: h["_version"] for h in helpers.scan(
        client, index=index, size=s.migrate_batch_size, version=True,
        query={"query": {"match_all": {}}, "_source": False})}


def _drop_deleted(client: Elasticsearch, new: str, copied: dict[str, int], old_now: dict[str, int]) -> int:
    """Documents copied into `new` that the old index lost since (a delete that landed there while copying)
    and that nobody rewrote in `new` after the swap: delete them from `new` (guarded by seq_no)."""
    removed = 0
    for doc_id, version in copied.items():
        if doc_id in old_now:
            continue
        try:
            doc = client.get(index=new, id=doc_id, source=False)
        except NotFoundError:
            continue
        if doc["_version"] != version:
            continue  # rewritten through the write alias after the swap: that write wins
        try:
            client.delete(index=new, id=doc_id, if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"])
            removed += 1
        except (NotFoundError, ConflictError):
            pass
    return removed


def migrate(client: Elasticsearch, settings: "Any", to_version: int | None = None,
            delete_old: bool = False) -> dict[str, Any]:
    """Move to a new concrete index with the current MAPPINGS, without downtime. Idempotent: when the current
    index already has this code's MAPPING_VERSION and no `to_version` is asked for, nothing is done (the summary
    says `migrated: False`); an explicit `to_version` copies anyway (e.g. for other shard settings).

    1. create `<base>-v<to_version or N+1>` with MAPPINGS;
    2. copy the current index into it (the `_reindex` API, or scan + bulk), external versions kept;
    3. swap `-read` and `-write` to it in one atomic `_aliases` call;
    4. catch up: copy again (external versioning: only documents the old index got during step 2 and that
       are newer than what the new index has land), and delete from the new index what was deleted from the
       old one during step 2 (unless rewritten since the swap).
    Returns a summary dict."""
    s = index_settings(settings)
    started = time.monotonic()
    old = ensure_index(client, s, warn=False)
    old_version = _version_of(s, old)
    live = mapping_version(client, old)
    if to_version is None and live == MAPPING_VERSION:
        log.info("%s is already at mapping version %s: nothing to migrate", old, live)
        return {"from_index": old, "to_index": old, "read_alias": read_alias(s), "write_alias": write_alias(s),
                "migrated": False, "mapping_version": live}
    if to_version is None and live is not None and live > MAPPING_VERSION:
        raise ValueError(f"{old} has mapping version {live}, newer than this release's {MAPPING_VERSION}: migrating "
                         "would copy it into older mappings (after a rollback, leave it: older releases read it); "
                         "--to-version copies anyway")
    target_version = to_version if to_version is not None else old_version + 1
    if target_version == old_version:
        raise ValueError(f"{old} is already version {old_version}")
    new = concrete_name(s, target_version)
    if client.indices.exists(index=new):
        raise ValueError(f"{new} already exists; pass a higher to_version or delete it")
    log.info("migrating %s (mapping version %s) to %s (mapping version %s)", old, live, new, MAPPING_VERSION)
    client.indices.create(index=new, **index_body(s))
    client.indices.refresh(index=old)
    first = _copy(client, s, old, new, s.migrate_use_reindex_api)
    client.indices.refresh(index=new)
    copied = _versions(client, s, new)  # only this function writes `new` until the swap
    actions: list[dict[str, Any]] = []
    for alias in (read_alias(s), write_alias(s)):
        for idx in alias_targets(client, alias):
            actions.append({"remove": {"index": idx, "alias": alias}})
    actions.append({"add": {"index": new, "alias": read_alias(s)}})
    actions.append({"add": {"index": new, "alias": write_alias(s), "is_write_index": True}})
    client.indices.update_aliases(actions=actions)
    client.indices.refresh(index=old)
    catch_up = _copy(client, s, old, new, first["method"] == "reindex")
    removed = _drop_deleted(client, new, copied, _versions(client, s, old))
    client.indices.refresh(index=new)
    if delete_old:
        client.indices.delete(index=old)
    summary = {"from_index": old, "to_index": new, "read_alias": read_alias(s), "write_alias": write_alias(s),
               "migrated": True, "mapping_version": MAPPING_VERSION, "from_mapping_version": live,
               "method": first["method"], "documents": client.count(index=new)["count"],
               "copied": first["copied"], "caught_up": catch_up["copied"], "deletes_caught_up": removed,
               "old_deleted": delete_old,
               "seconds": round(time.monotonic() - started, 3)}
    log.info("migrated %s -> %s: %s", old, new, summary)
    return summary
