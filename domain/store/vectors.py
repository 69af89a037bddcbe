"""The document's text vector: what it says (embedding_text), writing it (add_text_vectors, called by the index
sink per bulk), and re-embedding what an older model or no model embedded (backfill_vectors, `assetstream index
embed`, after `index migrate` to mapping version 2 or a MiniLM upgrade)."""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, helpers

from domain.store import degraded
from domain.store.client import index_settings
from domain.store.management import (IMAGE_VECTOR_FIELD, PACKED_IMAGE_VECTOR_FIELD, PACKED_VECTOR_FIELD,
                                     VECTOR_FIELD, image_vector_field, read_alias, vector_field, write_alias)

#: kind -> (float list field, packed field, packed dtype)
KINDS = {"text": (VECTOR_FIELD, PACKED_VECTOR_FIELD, "<f4"),
         "image": (IMAGE_VECTOR_FIELD, PACKED_IMAGE_VECTOR_FIELD, "<f2")}


def vector_model(mode: str = "off") -> dict[str, str]:
    """text_vector_model: the model, its version, and the field holding the vector (per vector_mode)."""
    from domain.textembed import MODEL_ID, model_version

    return {"id": MODEL_ID, "version": model_version(), "field": vector_field(mode)}


def pack(vec: np.ndarray, dtype: str = "<f4") -> str:
    return base64.b64encode(np.asarray(vec, dtype).tobytes()).decode("ascii")


def unpack(source: dict[str, Any], kind: str = "text") -> np.ndarray | None:
    """The stored text (or image) vector of a document's _source (packed or a float list), or None."""
    floats_field, packed_field, dtype = KINDS[kind]
    packed = source.get(packed_field)
    if packed:
        return np.frombuffer(base64.b64decode(packed), dtype).astype(np.float32)
    floats = source.get(floats_field)
    return np.asarray(floats, np.float32) if floats else None


def image_vector_model(mode: str = "off") -> dict[str, str]:
    """image_vector_model: the image encoder, its weights' version, and the field holding the vector."""
    from domain.vision.classifier import image_model

    return {**image_model(), "field": image_vector_field(mode)}


def query_image_problem(data: bytes, max_pixels: int) -> str | None:
    """Why an uploaded query image cannot be searched with (None: it can), from its header alone, before any
    pixel is decoded: not an image, or more pixels than `max_pixels` (index.query_image_max_pixels)."""
    from domain.vision.header import TooManyPixels, open_header

    try:
        open_header(data, max_pixels).close()
    except TooManyPixels as exc:
        size = f"{exc.width}x{exc.height} = {exc.pixels / 1e6:.0f} MP" if exc.width and exc.height and exc.pixels \
            else "larger than the decoder accepts"
        return (f"the query image is {size}, over the limit of {max_pixels / 1e6:.0f} MP "
                "(index.query_image_max_pixels): send a smaller copy (it is compared at 224 pixels)")
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read is not an image here
        return "the query image cannot be decoded (JPEG, PNG, WebP, GIF, BMP or TIFF expected)"
    return None


def embed_image_bytes(data: bytes, encoder: Any = None, max_pixels: int | None = None) -> np.ndarray | None:
    """The image vector of an image file's bytes (JPEG, PNG, WebP, GIF, BMP, TIFF), or None when it cannot be
    decoded. The file is embedded as the sink embeds an indexed one: through the preview the index would keep for
    it (domain.vision.thumbnail.query_preview: preprocess's decode and thumbnail, then the index's preview), so
    the exact file of an indexed image finds itself at a similarity of ~1. `max_pixels`: None = Pillow's limit
    (Image.MAX_IMAGE_PIXELS; query_image_problem, which checked the configured one first, raised it to that)."""
    from PIL import Image

    from domain.vision.classifier import decode_image, shared_classifier
    from domain.vision.thumbnail import query_preview
    from streams.errors import PermanentError

    try:
        preview = query_preview(data, max_pixels=max_pixels or Image.MAX_IMAGE_PIXELS or 1 << 40)
    except PermanentError:
        return None
    image = decode_image(preview)
    if image is None:
        return None
    return (encoder or shared_classifier()).features([image])[0]


def add_image_vectors(bodies: Sequence[dict[str, Any]], encoder: Any, model: dict[str, str]) -> None:
    """Embed every body's preview (`thumbnail`, the image the review app shows) in one batch; store the unit
    vector in model["field"] (`image_vector`: 1280 floats for the store's kNN; `image_vector_b64`: packed
    float16) and `image_vector_model` {id, version, field}. A body without a decodable preview gets none."""
    from domain.vision.classifier import decode_image

    images, idx = [], []
    for i, body in enumerate(bodies):
        thumb = body.get("thumbnail") or {}
        try:
            image = decode_image(base64.b64decode(thumb["data"])) if thumb.get("data") else None
        except ValueError:
            image = None
        if image is not None:
            images.append(image)
            idx.append(i)
    if not images:
        return
    for i, vec in zip(idx, encoder.features(images)):
        bodies[i].pop(IMAGE_VECTOR_FIELD, None)
        bodies[i].pop(PACKED_IMAGE_VECTOR_FIELD, None)
        if model["field"] == IMAGE_VECTOR_FIELD:
            bodies[i][IMAGE_VECTOR_FIELD] = [round(float(x), 6) for x in vec]
        else:
            bodies[i][PACKED_IMAGE_VECTOR_FIELD] = pack(vec, "<f2")
        bodies[i]["image_vector_model"] = dict(model)


WEAK_TAGS_EMBEDDED = 3
"""How many of the model's weaker proposals (model_tags, most confident first) the text vector reads."""


def _weak_tags(body: dict[str, Any]) -> str | None:
    """'possibly <held suggestions>, <the model's first weaker proposals>' as words ('product:water-bottle' ->
    'water bottle'): the evidence validate did not publish, last and marked as a guess."""
    tags = [*(body.get("tag_suggestions") or []), *(body.get("model_tags") or [])[:WEAK_TAGS_EMBEDDED]]
    words = list(dict.fromkeys(str(t).split(":", 1)[-1].replace("-", " ") for t in tags))
    return "possibly " + ", ".join(words) if words else None


def embedding_text(body: dict[str, Any]) -> str:
    """What the text vector says about an asset: title, caption, alt text, summary, tag labels and synonyms,
    visible text, place and product, one sentence-ish per field (the encoder reads the first 256 tokens), then
    the tags held back or proposed weakly ("possibly ...", _weak_tags)."""
    place = body.get("place") or {}
    product = body.get("product") or {}
    parts: list[Any] = [body.get("title"), body.get("caption"), body.get("alt_text"), body.get("summary"),
                        ", ".join(body.get("tag_labels") or []), ", ".join(body.get("tag_synonyms") or []),
                        body.get("visible_text"),
                        ", ".join(str(place[k]) for k in ("city", "region", "country") if place.get(k)),
                        " ".join(str(product[k]) for k in ("brand", "name", "category") if product.get(k)),
                        _weak_tags(body)]
    seen: list[str] = []
    for p in parts:
        p = " ".join(str(p).split()) if p else ""
        if p and p not in seen:
            seen.append(p)
    return ". ".join(seen)


def add_text_vectors(bodies: Sequence[dict[str, Any]], embedder: Any, model: dict[str, str],
                     text_of: Callable[[dict[str, Any]], str] = embedding_text) -> None:
    """Embed every body's embedding_text (or text_of(body): bench/search.py --text-variants) in one batch;
    store the unit vector in model["field"] (`text_vector`: 384 floats rounded to 6 decimals, for the store's kNN; `text_vector_b64`: packed) and `text_vector_model`
    {id, version, field} so a model or mode change can be found and backfilled."""
    texts = [text_of(b) for b in bodies]
    idx = [i for i, t in enumerate(texts) if t]
    if not idx:
        return
    from domain.textembed import DOC_MAX_LEN

    # small batches of similar length (embed sorts by length): padding to a batch's longest text is wasted work
    vecs = embedder.embed([texts[i] for i in idx], batch_size=8, cache=False, max_len=DOC_MAX_LEN)
    for i, vec in zip(idx, vecs):
        bodies[i].pop(VECTOR_FIELD, None)
        bodies[i].pop(PACKED_VECTOR_FIELD, None)
        if model["field"] == VECTOR_FIELD:
            bodies[i][VECTOR_FIELD] = [round(float(x), 6) for x in vec]
        else:
            bodies[i][PACKED_VECTOR_FIELD] = pack(vec)
        bodies[i]["text_vector_model"] = dict(model)
        degraded.clear(bodies[i], degraded.VECTOR_PART)  # a document indexed without its vector has it now



def backfill_vectors(client: Elasticsearch, settings: "Any", synonyms_of: Callable[[str], Sequence[str]],
                     embedder: Any = None, batch_size: int = 64) -> dict[str, int]:
    """Embed every document whose text_vector_model version or field is not this code's and mode's (none yet,
    an older model, or another index.vector_mode before a migrate).

    Each is written back whole at its own external version with version_type external_gte: a newer version
    the sink wrote meanwhile wins (409, counted `skipped`). Caveat: a review applied by the sink at the same
    version between this read and write is overwritten (run it when reviews are quiet, or run it again: the
    sink's next write of that asset restores the review from the feedback topic). Returns counts."""
    from domain.textembed import shared_embedder

    s = index_settings(settings)
    model = vector_model(s.vector_mode)
    embedder = embedder or shared_embedder()
    current = {"bool": {"filter": [{"term": {"text_vector_model.version": model["version"]}},
                                   {"term": {"text_vector_model.field": model["field"]}}]}}
    query = {"query": {"bool": {"must_not": [current]}}}
    counts = {"embedded": 0, "skipped": 0}
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        bodies = [h["_source"] for h in batch]
        for body in bodies:
            if not body.get("tag_synonyms"):
                syn = list(dict.fromkeys(x for t in body.get("tags") or [] for x in synonyms_of(t)))
                if syn:
                    body["tag_synonyms"] = syn
        add_text_vectors(bodies, embedder, model)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        for body in bodies:
            body["indexed_at"] = now  # rewritten: search processes' vector caches read it again
        actions = [{"_op_type": "index", "_index": write_alias(s), "_id": h["_id"], "version": h["_version"],
                    "version_type": "external_gte", "_source": h["_source"]} for h in batch]
        for ok, item in helpers.streaming_bulk(client, actions, raise_on_error=False, max_retries=3):
            if ok:
                counts["embedded"] += 1
            elif item["index"].get("status") == 409:
                counts["skipped"] += 1
            else:
                raise RuntimeError(f"backfill: {item['index'].get('error')}")
        batch.clear()

    for hit in helpers.scan(client, index=read_alias(s), query=query, size=batch_size, version=True):
        batch.append(hit)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    client.indices.refresh(index=read_alias(s))
    return counts
