"""PreprocessStage: raw AssetEvent -> PreprocessedAsset (fetch, safe decode, thumbnail, metadata, OCR, hashes,
signals). A cpu stage: the runner calls `process` from its thread pool; blocking fetches are fine here."""
from __future__ import annotations

import dataclasses
import logging
import traceback
from typing import Any, Callable

from consumers.preprocess import hashes, metadata, ocr, signals, video
from consumers.preprocess.fetch import FetchPolicy, fetch
from domain.events import capped_event
from domain.records import PipelineFacts, is_deleted
from domain.vision import decode as dec
from domain.vision import png
from domain.vision.frames import count_frames
from domain.vision.thumbnail import WORK_EDGE, decode_for_thumbnail, encode_thumbnail, thumbnail_base
from streams import metrics
from streams.cpu import Budget, cpu_slots
from streams.errors import PermanentError, TransientError
from streams.records import stamp
from streams.stage import Output, RecordContext, Stage, final_attempt

log = logging.getLogger(__name__)

SIGNAL_FAILED = {"colours": "colour analysis failed", "faces": "face detection failed",
                 "nsfw": "nsfw check failed"}
"""The degraded reason of a signal that raised (followed by the exception's class name)."""
SETTLED = {"metadata": "metadata_too_large"}
"""Degraded parts that are the same on every attempt (the file itself, not the load), with their metric reason:
never retried. `metadata`: a PNG whose text/XMP/ICC chunks inflate past Pillow's limits, decoded without them
(domain/vision/decode.py `Decoded.metadata_skipped`)."""


SETTLED_REASONS = {ocr.TESSERACT_MISSING: "tesseract_unavailable"}
"""Degraded reasons that are the same on every attempt (the deployment, not the load), with their metric reason:
never retried. A missing tesseract binary stays missing until someone installs it."""


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
        # decoded images outlive their CPU slot (OCR, hashes and signals take slots of their own): this bounds how
        # many pixels the worker's threads hold at once (trial 24 F2: 16 threads x 80 MP RGBA exceeded 3 Gi)
        self.pixels = Budget(self.cfg.decoded_pixels_budget)
        missing = ocr.tesseract_missing(self.cfg)
        if missing:  # said once at start; each record whose OCR needed it is marked degraded (trial 32 F6)
            log.warning("%s", missing)
        if self.cfg.faces_enabled:  # the face model's files are checked now: missing ones stop the worker at start
            signals.configure_faces(getattr(getattr(settings, "vision", None), "models_dir", None))
        if self.cfg.video_enabled and self.cfg.video_max_bytes > self.cfg.max_bytes:
            # the fetch cannot know the kind before the bytes: it admits a video's size, an image over
            # max_bytes is refused right after (preprocess_bytes)
            self.policy = dataclasses.replace(self.policy, max_bytes=self.cfg.video_max_bytes)

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
        final = final_attempt(ctx, self.settings)
        # a first attempt with more to come is held to preprocess.first_attempt_timeout_s (unless on course to
        # finish): a slow origin then costs a thread seconds, not fetch_timeout_s, and goes to the retry topic
        fetched = fetch(uri, self.policy, first_attempt=ctx is not None and ctx.attempt == 1 and not final)
        record = self.preprocess_bytes(asset, fetched.data, final=final)
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
        container = video.sniff_video(data) if cfg.video_enabled else None
        if container:
            return self.preprocess_video(asset, data, container, final=final)
        if len(data) > cfg.max_bytes:
            raise PermanentError(f"{len(data)} bytes, over max_bytes={cfg.max_bytes} (only a video may be larger, "
                                 f"up to video_max_bytes)", reason="too_large", details={"byte_size": len(data)})
        chunks = png.walk(data)  # a PNG's chunk list, walked once: its size, its bound, its strip and its frames
        first, ocr_extra = self._pixels_needed(data, chunks)
        # the most this record may hold, taken at once: its decode, and OCR's larger re-decode of a JPEG when OCR
        # may read it (given back as soon as the gate says no text, and after OCR). Never a second wait while
        # holding: two records each holding a share and waiting for more while the other holds the rest would wait
        # for ever (and first come, first served, a fresh request at the head of the queue would wait behind them)
        with self.pixels.hold(first + ocr_extra) as hold:
            return self._finish(*self._image_record(asset, data, chunks, lambda: hold.shrink_to(first)), final)

    def _pixels_needed(self, data: bytes, chunks: png.Chunks | None) -> tuple[int, int]:
        """(pixels of the decode, pixels of OCR's re-decode if the OCR gate lets the image through: 0 unless OCR is
        on and the image is a JPEG whose reduced decode is smaller than OCR reads), from the header."""
        cfg = self.cfg
        head = dec.header_size(data, max_pixels=cfg.max_pixels, allowed_formats=cfg.allowed_formats, chunks=chunks)
        if head is None:
            return 0, 0
        w, h = dec.decoded_size(*head, max(cfg.thumbnail_edge, WORK_EDGE))
        want = min(cfg.ocr_max_edge, max(head[:2]))
        if not cfg.ocr_enabled or max(w, h) >= want:
            return w * h, 0
        ow, oh = dec.decoded_size(*head, want)
        return w * h, ow * oh

    def _image_record(self, asset: dict[str, Any], data: bytes, chunks: png.Chunks | None,
                      ocr_done: Callable[[], None]) -> tuple[dict[str, Any], dict[str, str]]:
        """The record of an image and its degraded parts; the decoded image is dropped when this returns.
        `chunks`: a PNG's chunk list (`png.walk`). `ocr_done` gives back the decoded-pixel budget held for OCR's
        re-decode once it is not needed."""
        cfg = self.cfg
        with cpu_slots():  # CPU-heavy: bounded by the worker's CPUs, not by its (many, mostly fetching) threads
            sha = hashes.sha256_hex(data)
            d = decode_for_thumbnail(data, max_pixels=cfg.max_pixels, allowed_formats=cfg.allowed_formats,
                                     edge=cfg.thumbnail_edge, chunks=chunks)
            img = d.image
            base = thumbnail_base(img, cfg.thumbnail_edge)
            thumb, tw, th = encode_thumbnail(base, max_bytes=cfg.thumbnail_max_bytes,
                                             quality=cfg.thumbnail_quality)
        # small derivatives come from the thumbnail-sized copy when it is big enough (cheaper than the work image)
        small_src = base if max(base.size) >= hashes.HASH_EDGE else img
        exif_rec, _ = metadata.parse_exif(d.exif)
        exif_rec = metadata.apply_gps_privacy(exif_rec, cfg.gps_privacy, cfg.gps_round_digits)
        place = metadata.place_for(exif_rec) if cfg.gps_privacy != "drop" else None
        xmp = metadata.read_xmp(d.info, d.source)  # once per image (code review 14 H1)
        captured = metadata.best_capture_time(exif_rec, xmp, d.source)
        if captured:
            exif_rec = {**(exif_rec or dict.fromkeys(metadata.EXIF_FIELDS)), "capture_time": captured}
        if exif_rec is not None and all(v is None for v in exif_rec.values()):
            exif_rec = None
        degraded: dict[str, str] = {"metadata": d.metadata_skipped} if d.metadata_skipped else {}
        record = {
            "asset": asset,
            "image": {"width": d.width, "height": d.height, "format": d.format, "mode": d.mode,
                      "byte_size": len(data), "content_sha256": sha, "orientation": d.orientation,
                      "has_alpha": d.has_alpha, "frames": count_frames(data, d.format, chunks=chunks)},
            "thumbnail": {"data": thumb, "media_type": "image/jpeg", "width": tw, "height": th},
            "exif": exif_rec,
            "place": place,
            "embedded": metadata.embedded_metadata(xmp, d.source, d.exif),
            "ocr": self._degrade(self._read(d, data, ocr_done), degraded),
            "hashes": self._hashes(data, small_src, sha),
            "signals": self._signals(img, small_src, degraded),
            "stamp": stamp(self.name),
            "degraded": degraded,
        }
        return record, degraded

    def _finish(self, record: dict[str, Any], degraded: dict[str, str], final: bool) -> dict[str, Any]:
        retry = {part: why for part, why in degraded.items() if part not in SETTLED and why not in SETTLED_REASONS}
        if retry and not final:
            part, why = next(iter(retry.items()))
            raise TransientError(f"{part}: {why}", reason=f"degraded_{part}", details=retry)
        for part, why in degraded.items():
            metrics.DEGRADED.labels(self.name, part, SETTLED_REASONS.get(why) or SETTLED.get(part, why)).inc()
        return record

    def preprocess_video(self, asset: dict[str, Any], data: bytes, container: str, *,
                         final: bool = True) -> dict[str, Any]:
        """A video: its container facts and bounded keyframes (consumers/preprocess/video.py), each keyframe
        through the image treatment (OCR, hashes, colours, faces, NSFW); the poster frame is the thumbnail,
        `ocr` holds the text of every keyframe (so search finds a video by text seen in any of them)."""
        cfg = self.cfg
        with cpu_slots():  # decoding is the CPU-heavy part; per-keyframe OCR and signals take their own slots
            v = video.extract(data, container, video.Limits.from_settings(cfg))
        degraded: dict[str, str] = {}
        frames, reads, looks = [], [], []
        for k in v.keyframes:
            small = k.image if max(k.image.size) <= hashes.HASH_EDGE else dec.resized(k.image, hashes.HASH_EDGE)
            read = self._degrade(self._read_frame(k.image), degraded)
            p, dh = hashes.perceptual(small)
            look = self._signals(k.image, small, degraded)
            kthumb = None
            if cfg.video_keyframe_thumbnail_edge:
                kthumb, _, _ = encode_thumbnail(thumbnail_base(k.image, cfg.video_keyframe_thumbnail_edge),
                                                max_bytes=32 * 1024, quality=70)
            frames.append({"offset_s": round(k.offset_s, 3), "reason": k.reason,
                           "scene_score": round(k.scene_score, 4), "ocr_text": read.get("text") or "",
                           "phash": p, "dhash": dh, "colors": [c["name"] for c in look["colors"]],
                           "face_count": look["face_count"], "nsfw_score": look["nsfw_score"], "thumbnail": kthumb})
            reads.append(read)
            looks.append(look)
        poster = video.poster_index(v.keyframes)
        thumb, tw, th = encode_thumbnail(thumbnail_base(v.keyframes[poster].image, cfg.thumbnail_edge),
                                         max_bytes=cfg.thumbnail_max_bytes, quality=cfg.thumbnail_quality)
        sha = hashes.sha256_hex(data)
        exif_rec = None
        if v.creation_time or v.gps:
            exif_rec = {**dict.fromkeys(metadata.EXIF_FIELDS), "capture_time": v.creation_time,
                        "gps_lat": v.gps[0] if v.gps else None, "gps_lon": v.gps[1] if v.gps else None}
            exif_rec = metadata.apply_gps_privacy(exif_rec, cfg.gps_privacy, cfg.gps_round_digits)
        place = metadata.place_for(exif_rec) if exif_rec and cfg.gps_privacy != "drop" else None
        nsfw = [s["nsfw_score"] for s in looks if s["nsfw_score"] is not None]
        record = {
            "asset": asset,
            "image": {"width": v.width, "height": v.height, "format": v.container, "mode": None,
                      "byte_size": len(data), "content_sha256": sha, "orientation": None, "has_alpha": False,
                      "frames": None},  # a video's frames: video.frame_count
            "thumbnail": {"data": thumb, "media_type": "image/jpeg", "width": tw, "height": th},
            "exif": exif_rec,
            "place": place,
            "embedded": None,
            "ocr": ocr.merged(reads, cfg.ocr_lang, cfg.ocr_max_chars),
            "hashes": {"sha256": sha, "phash": frames[poster]["phash"], "dhash": frames[poster]["dhash"],
                       "phash_bands": hashes.phash_bands(frames[poster]["phash"])},
            # the most sensitive keyframe decides (a face or NSFW frame anywhere in the video routes to review);
            # the colours are every keyframe's
            "signals": {"face_count": max(s["face_count"] for s in looks), "nsfw_score": max(nsfw) if nsfw else None,
                        "colors": signals.merged_colours([s["colors"] for s in looks])},
            "stamp": stamp(self.name),
            "degraded": degraded,
            "media_type": "video",
            "video": {"container": v.container, "codec": v.codec, "duration_s": v.duration_s, "fps": v.fps,
                      "frame_count": v.frame_count, "rotation": v.rotation, "intra_frames": v.intra_frames,
                      "truncated_by": v.truncated_by, "keyframes": frames,
                      "poster_offset_s": frames[poster]["offset_s"], "transcript": None,
                      "data": data if len(data) <= cfg.video_inline_max_bytes else None},
        }
        return self._finish(record, degraded, final)

    @staticmethod
    def _hashes(data: bytes, small, sha: str) -> dict:
        with cpu_slots():
            return hashes.hashes_record(data, small, sha)

    @staticmethod
    def _degrade(rec: dict, degraded: dict[str, str]) -> dict:
        why = rec.pop("degraded", None) or ocr.DEGRADING.get(rec.get("skip_reason") or "")
        if why:
            degraded["ocr"] = why
        return rec

    def _gate(self, img) -> dict | None:
        """The skipped OCR record when OCR is off or the image shows no text, else None (read it)."""
        cfg = self.cfg
        if not cfg.ocr_enabled:
            return ocr.skipped(cfg.ocr_lang, "disabled")
        if cfg.ocr_gate == "heuristic" and not ocr.text_likelihood(img)[0]:
            return ocr.skipped(cfg.ocr_lang, "no_text_detected")
        return None

    def _read_frame(self, img) -> dict:
        return self._gate(img) or self._ocr_pass(img, img.size)

    def _read(self, d: dec.Decoded, data: bytes, done: Callable[[], None]) -> dict:
        """OCR of the decoded image; a JPEG whose reduced decode is too small to read text is decoded again, larger
        (its pixels counted in the budget from the start: `_pixels_needed`). `done` is called once that larger
        image is gone, or when none is needed."""
        cfg = self.cfg
        gated = self._gate(d.image)
        if gated:
            done()
            return gated
        want = min(cfg.ocr_max_edge, max(d.width, d.height))
        if max(d.image.size) >= want:
            done()
            return self._ocr_pass(d.image, (d.width, d.height))
        # reduced decode was too small to read text: decode again, larger
        larger = None
        try:
            larger = dec.decode(data, max_pixels=cfg.max_pixels, allowed_formats=cfg.allowed_formats,
                                min_edge=want).image
            return self._ocr_pass(larger, (d.width, d.height))
        except BaseException as exc:
            # the frames of OCR's traceback hold the larger image as long as the exception lives (the runner keeps
            # it to retry or dead-letter the record): their locals go before the budget share does (code review 15 L6)
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            larger = None  # noqa: F841 - the larger image goes before its budget share does
            done()

    def _ocr_pass(self, img, full_size: tuple[int, int]) -> dict:
        cfg = self.cfg
        # the limit scales with the pixels OCR reads; the slot wait (a busy worker) does not count against it
        timeout = ocr.timeout_for(ocr.ocr_size(img.size, cfg.ocr_max_edge), cfg.ocr_timeout_s, cfg.ocr_timeout_ref_mpx)
        with cpu_slots():
            return ocr.read_text(img, engine=cfg.ocr_engine, lang=cfg.ocr_lang, max_edge=cfg.ocr_max_edge,
                                 min_confidence=cfg.ocr_min_confidence, timeout_s=timeout,
                                 max_chars=cfg.ocr_max_chars, full_size=full_size)

    def _signals(self, img, small, degraded: dict[str, str]) -> dict:
        """Colours, face count, NSFW score. A face detection or NSFW check that fails (an exception: out of
        memory, a broken model session) is a degraded part (issue 21): retried, then the record goes on marked
        `degraded: {faces|nsfw: why}` with face_count 0 / nsfw_score null, which validate sends to review; it
        never sinks an otherwise good record. An NSFW model that is not installed is a deployment choice (null
        score, not degraded); a missing tesseract is degraded OCR (SETTLED_REASONS), as it leaves text unread."""
        cfg = self.cfg
        out: dict[str, Any] = {"face_count": 0, "nsfw_score": None, "colors": []}
        # colours count opaque pixels only: of the decoded image when it is transparent (no full-size copy is made)
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
