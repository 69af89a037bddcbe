"""PreprocessStage: raw AssetEvent -> PreprocessedAsset (fetch, safe decode, thumbnail, metadata, OCR, hashes,
signals). A cpu stage: the runner calls `process` from its thread pool; blocking fetches are fine here."""
from __future__ import annotations

import logging
from typing import Any

from consumers.preprocess import decode as dec
from consumers.preprocess import hashes, metadata, ocr, signals
from consumers.preprocess.fetch import FetchPolicy, fetch
from consumers.preprocess.thumbnail import encode_thumbnail, thumbnail_base
from domain.events import capped_event
from domain.records import PipelineFacts, is_deleted
from streams import metrics
from streams.cpu import cpu_slots
from streams.errors import TransientError
from streams.records import stamp
from streams.stage import Output, RecordContext, Stage, final_attempt

log = logging.getLogger(__name__)

WORK_EDGE = 800
"""Smallest long edge the reduced (JPEG draft) decode keeps: enough for faces, OCR gating and hashes."""


class PreprocessStage(PipelineFacts, Stage):
    name = "preprocess"
    input_topic = "raw"
    output_topic = "preprocessed"
    kind = "cpu"
    embeds_input = "asset"  # the input record, unchanged: its Avro bytes are reused

    def __init__(self, settings):
        super().__init__(settings)
        self.cfg = settings.preprocess
        self.policy = FetchPolicy.from_settings(self.cfg)

    # -- the record path ----------------------------------------------------------------------------------
    def process(self, value: dict[str, Any], ctx: RecordContext | None = None) -> Output:
        # an event that did not come through the SDK or the webhook may hold any amount of text: it is cut to the
        # entry limits (domain/events.py) before it is carried forward, and the record says so (`degraded`)
        asset, cut = capped_event(value)
        if cut:
            log.warning("%s: event of %s carried forward with over-long text cut: %s", self.name,
                        value.get("asset_id"), "; ".join(cut))
        if is_deleted(asset):
            return Output(value={"asset": asset, "stamp": stamp(self.name)})
        uri = asset.get("source_uri")
        fetched = fetch(uri, self.policy)
        record = self.preprocess_bytes(asset, fetched.data, final=final_attempt(ctx, self.settings))
        if cut:
            fields = sorted({c.split(" cut from ", 1)[0].split("[", 1)[0] for c in cut})
            record["degraded"]["event_text"] = "over-long text cut to the entry limits: " + ", ".join(fields)
            metrics.DEGRADED.labels(self.name, "event_text", "text_cut").inc()
        return Output(value=record)

    def preprocess_bytes(self, asset: dict[str, Any], data: bytes, *, final: bool = True) -> dict[str, Any]:
        """Everything after the fetch, from the source bytes (also used by the benchmark). A metadata part that
        times out or fails raises TransientError (the runner retries the record with backoff) unless this is
        the `final` attempt: then the record goes on with the part named in `degraded` (validate sends it to
        review)."""
        cfg = self.cfg
        sha = hashes.sha256_hex(data)
        d = dec.decode(data, max_pixels=cfg.max_pixels, allowed_formats=cfg.allowed_formats,
                       min_edge=max(cfg.thumbnail_edge, WORK_EDGE))
        img = d.image
        base = thumbnail_base(img, cfg.thumbnail_edge)
        thumb, tw, th = encode_thumbnail(base, max_bytes=cfg.thumbnail_max_bytes, quality=cfg.thumbnail_quality)
        # small derivatives come from the thumbnail-sized copy when it is big enough (cheaper than the work image)
        small_src = base if max(base.size) >= hashes.HASH_EDGE else img
        exif_rec, _ = metadata.parse_exif(d.exif)
        exif_rec = metadata.apply_gps_privacy(exif_rec, cfg.gps_privacy, cfg.gps_round_digits)
        place = metadata.place_for(exif_rec) if cfg.gps_privacy != "drop" else None
        captured = metadata.best_capture_time(exif_rec, d.info, d.source)
        if captured:
            exif_rec = {**(exif_rec or dict.fromkeys(metadata.EXIF_FIELDS)), "capture_time": captured}
        if exif_rec is not None and all(v is None for v in exif_rec.values()):
            exif_rec = None
        degraded: dict[str, str] = {}
        record = {
            "asset": asset,
            "image": {"width": d.width, "height": d.height, "format": d.format, "mode": d.mode,
                      "byte_size": len(data), "content_sha256": sha, "orientation": d.orientation,
                      "has_alpha": d.has_alpha},
            "thumbnail": {"data": thumb, "media_type": "image/jpeg", "width": tw, "height": th},
            "exif": exif_rec,
            "place": place,
            "embedded": metadata.embedded_metadata(d.info, d.source, d.exif),
            "ocr": self._ocr(d, data, degraded),
            "hashes": hashes.hashes_record(data, small_src, sha),
            "signals": self._signals(img, small_src),
            "stamp": stamp(self.name),
            "degraded": degraded,
        }
        if degraded and not final:
            part, why = next(iter(degraded.items()))
            raise TransientError(f"{part}: {why}", reason=f"degraded_{part}", details=degraded)
        for part, why in degraded.items():
            metrics.DEGRADED.labels(self.name, part, why).inc()
        return record

    def _ocr(self, d: dec.Decoded, data: bytes, degraded: dict[str, str]) -> dict | None:
        rec = self._read(d, data)
        why = rec.pop("degraded", None) or ocr.DEGRADING.get(rec.get("skip_reason") or "")
        if why:
            degraded["ocr"] = why
        return rec

    def _read(self, d: dec.Decoded, data: bytes) -> dict:
        cfg = self.cfg
        if not cfg.ocr_enabled:
            return ocr.skipped(cfg.ocr_lang, "disabled")
        if cfg.ocr_gate == "heuristic":
            likely, _ = ocr.text_likelihood(d.image)
            if not likely:
                return ocr.skipped(cfg.ocr_lang, "no_text_detected")
        img = d.image
        want = min(cfg.ocr_max_edge, max(d.width, d.height))
        if max(img.size) < want:  # reduced decode was too small to read text: decode again, larger
            img = dec.decode(data, max_pixels=cfg.max_pixels, allowed_formats=cfg.allowed_formats,
                             min_edge=want).image
        # the limit scales with the pixels OCR reads; the slot wait (a busy worker) does not count against it
        timeout = ocr.timeout_for(ocr.ocr_size(img.size, cfg.ocr_max_edge), cfg.ocr_timeout_s, cfg.ocr_timeout_ref_mpx)
        with cpu_slots():
            return ocr.read_text(img, engine=cfg.ocr_engine, lang=cfg.ocr_lang, max_edge=cfg.ocr_max_edge,
                                 min_confidence=cfg.ocr_min_confidence, timeout_s=timeout,
                                 max_chars=cfg.ocr_max_chars, full_size=(d.width, d.height))

    def _signals(self, img, small) -> dict:
        cfg = self.cfg
        out: dict[str, Any] = {"face_count": 0, "nsfw_score": None, "colors": []}
        steps = [("colors", lambda: signals.dominant_colours(img if img.mode == "RGBA" else small))]
        if cfg.faces_enabled:
            steps.append(("face_count", lambda: signals.face_count(img)))
        if cfg.nsfw_enabled:
            steps.append(("nsfw_score", lambda: signals.nsfw_score(small)))
        for key, fn in steps:
            try:
                out[key] = fn()
            except Exception as exc:  # noqa: BLE001 - advisory signals never sink an otherwise good record
                log.warning("signal %s failed: %s", key, type(exc).__name__)
        return out


__all__ = ["PreprocessStage"]
