"""PreprocessStage: raw AssetEvent -> PreprocessedAsset (fetch, safe decode, thumbnail, metadata, OCR, hashes,
signals). A cpu stage: the runner calls `process` from its thread pool; blocking fetches are fine here."""
from __future__ import annotations

import logging
from typing import Any

from consumers.preprocess import decode as dec
from consumers.preprocess import hashes, metadata, ocr, signals
from consumers.preprocess.fetch import FetchPolicy, fetch
from consumers.preprocess.thumbnail import encode_thumbnail, thumbnail_base
from domain.records import PipelineFacts, is_deleted
from streams import metrics
from streams.cpu import cpu_slots
from streams.errors import TransientError
from streams.records import stamp
from streams.stage import Output, RecordContext, Stage, final_attempt

log = logging.getLogger(__name__)

WORK_EDGE = 800
"""Smallest long edge the reduced (JPEG draft) decode keeps: enough for faces, OCR gating and hashes."""

SIGNAL_FAILED = {"colours": "colour analysis failed", "faces": "face detection failed",
                 "nsfw": "nsfw check failed"}
"""The degraded reason of a signal that raised (followed by the exception's class name)."""


class PreprocessStage(PipelineFacts, Stage):
    name = "preprocess"
    input_topic = "raw"
    output_topic = "preprocessed"
    kind = "cpu"
    concurrency = 16  # threads mostly wait on fetches; decode, OCR, hashes and signals run inside cpu_slots()
    embeds_input = "asset"  # the input record, unchanged: its Avro bytes are reused

    def __init__(self, settings):
        super().__init__(settings)
        self.cfg = settings.preprocess
        self.policy = FetchPolicy.from_settings(self.cfg)

    # -- the record path ----------------------------------------------------------------------------------
    def process(self, value: dict[str, Any], ctx: RecordContext | None = None) -> Output:
        if is_deleted(value):
            return Output(value={"asset": value, "stamp": stamp(self.name)})
        uri = value.get("source_uri")
        fetched = fetch(uri, self.policy)
        return Output(value=self.preprocess_bytes(value, fetched.data, final=final_attempt(ctx, self.settings)))

    def preprocess_bytes(self, asset: dict[str, Any], data: bytes, *, final: bool = True) -> dict[str, Any]:
        """Everything after the fetch, from the source bytes (also used by the benchmark). A metadata part that
        times out or fails raises TransientError (the runner retries the record with backoff) unless this is
        the `final` attempt: then the record goes on with the part named in `degraded` (validate sends it to
        review)."""
        cfg = self.cfg
        with cpu_slots():  # CPU-heavy: bounded by the worker's CPUs, not by its (many, mostly fetching) threads
            sha = hashes.sha256_hex(data)
            d = dec.decode(data, max_pixels=cfg.max_pixels, allowed_formats=cfg.allowed_formats,
                           min_edge=max(cfg.thumbnail_edge, WORK_EDGE))
            img = d.image
            base = thumbnail_base(img, cfg.thumbnail_edge)
            thumb, tw, th = encode_thumbnail(base, max_bytes=cfg.thumbnail_max_bytes,
                                             quality=cfg.thumbnail_quality)
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
            "hashes": self._hashes(data, small_src, sha),
            "signals": self._signals(img, small_src, degraded),
            "stamp": stamp(self.name),
            "degraded": degraded,
        }
        if degraded and not final:
            part, why = next(iter(degraded.items()))
            raise TransientError(f"{part}: {why}", reason=f"degraded_{part}", details=degraded)
        for part, why in degraded.items():
            metrics.DEGRADED.labels(self.name, part, why).inc()
        return record

    @staticmethod
    def _hashes(data: bytes, small, sha: str) -> dict:
        with cpu_slots():
            return hashes.hashes_record(data, small, sha)

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

    def _signals(self, img, small, degraded: dict[str, str]) -> dict:
        """Colours, face count, NSFW score. A face detection or NSFW check that fails (an exception: out of
        memory, a broken model session) is a degraded part (issue 21): retried, then the record goes on marked
        `degraded: {faces|nsfw: why}` with face_count 0 / nsfw_score null, which validate sends to review; it
        never sinks an otherwise good record. An NSFW model that is not installed is a deployment choice (null
        score, not degraded), as tesseract_unavailable is for OCR."""
        cfg = self.cfg
        out: dict[str, Any] = {"face_count": 0, "nsfw_score": None, "colors": []}
        steps = [("colors", "colours", lambda: signals.dominant_colours(img if img.mode == "RGBA" else small))]
        if cfg.faces_enabled:
            steps.append(("face_count", "faces", lambda: signals.face_count(img)))
        if cfg.nsfw_enabled:
            steps.append(("nsfw_score", "nsfw", lambda: signals.nsfw_score(small)))
        for key, part, fn in steps:
            try:
                with cpu_slots():
                    out[key] = fn()
            except Exception as exc:  # noqa: BLE001 - marked degraded, never sinks an otherwise good record
                log.warning("signal %s failed: %s", key, type(exc).__name__)
                degraded[part] = f"{SIGNAL_FAILED[part]} ({type(exc).__name__})"
        return out


__all__ = ["PreprocessStage"]
