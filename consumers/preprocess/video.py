"""Video assets with PyAV (its wheel carries FFmpeg): recognise a video by content, read the container's facts,
and select a bounded set of keyframes (first frame + scene changes + an even spread) without decoding the whole
video.

How the decode stays bounded (a 10-minute 1080p video must not hold a worker for minutes):
- refused before any frame is decoded: over `video_max_bytes`, `video_max_duration_s`, `video_max_pixels` per
  frame or `video_max_frames` frames (as the container declares them);
- pass 1 demuxes the packets and decodes only those the container flags as keyframes (an intra frame a decoder
  can start from: H.264/HEVC IDR or CRA, VP8/VP9/AV1 key frames), each on its own (the decoder drained and reset
  after it, as after a seek), each kept only as a 64 px colour signature (swscale straight from the decoder's
  pixels) for scene detection. The packet flags, not the decoder's `skip_frame`, say what is intra: FFmpeg's
  vp9 decoder ignores `skip_frame = NONKEY` (every frame came back), and HEVC's CRA pictures of an open GOP
  (libx265's default) fed one after another without the pictures between come back out of order or not at all
  (their picture order counts wrap). Encoders put an intra frame at a scene cut (x264's `scenecut`, libvpx's
  auto keyframes for VP8) and every few seconds (x264/x265: 250 frames, libvpx-vp9: 128 and none at cuts), so
  scene changes and an even spread are found among them. At most `video_max_scan_keyframes` intra frames are
  looked at (an all-intra file stops there). The chosen ones (<= `video_max_keyframes`) are then decoded again
  after a seek each, scaled to `video_frame_edge`: memory does not grow with the video;
- pass 2, only for a long-GOP file (screen recordings, some phones, x264 ultrafast) whose intra frames leave a
  stretch longer than `video_spread_gap_s` (between two of them, or from the last one to the end): one forward
  decode of reference frames only (`skip_frame = "NONREF"`), seeking over stretches that need nothing, taking
  the first frame at or after every even-spread time inside a long stretch (however near the intra frame that
  opens it), on to the stretch's end, and on the way the scene changes a 64 px signature compared every
  `SCENE_SAMPLE_S` finds; for VP9 (`SCANNED_THROUGH`: no key frame at cuts, a decoder that decodes every frame
  anyway) pass 2 always runs, as one decode from the start to the end with the same scene test, so a scene between
  two key frames (however near) is found; so it does for a clip of at most `video_spread_gap_s` (`short_clip`);
- a wall-time cap over both passes (`video_max_wall_s`): past it, the keyframes found so far are used;
  `truncated_by` names the cap that stopped selection early (`max_scan_keyframes`, `max_wall_s`), or
  `max_keyframes` when scene changes were found that no keyframe shows (more shots than keyframes), never
  anything else;
- a decode error anywhere (a cut upload, damaged data) dead-letters the video (`corrupt_video`, with how far it
  decoded), even when its start plays: publishing it would publish a broken video;
- frames are kept scaled to `video_frame_edge` on the long side (the image treatment runs on those).
A file FFmpeg cannot demux or decode is a PermanentError (`corrupt_video`), so it dead-letters with a reason.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image

from domain.capturetime import capture_time
from streams.errors import PermanentError

log = logging.getLogger(__name__)

SIGNATURE_EDGE = 64
"""Width of the small colour copy of each candidate frame used for scene detection."""

_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"}


def sniff_video(data: bytes) -> str | None:
    """Container from magic numbers (never from names or headers): MP4, MOV, WEBM or MKV; None otherwise.
    HEIF/AVIF stills share the ISO-BMFF `ftyp` box and are left to the image decoder."""
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "MOV" if brand == b"qt  " else "MP4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free") and len(data) > 16:  # old QuickTime without ftyp
        return "MOV"
    if head[:4] == b"\x1aE\xdf\xa3":  # EBML
        return "WEBM" if b"webm" in head else "MKV"
    return None


@dataclass
class Keyframe:
    offset_s: float
    image: Image.Image
    """RGB, long edge <= the frame edge, rotated for display."""
    scene_score: float
    """Mean absolute colour difference to the previous intra frame (0-1), or for a scene found by pass 2 to the
    frame sampled `SCENE_SAMPLE_S` before; 1.0 for the first frame, 0.0 for a spread frame of pass 2."""
    reason: str
    """'first' | 'scene' | 'spread'"""
    signature: np.ndarray | None = None


@dataclass
class Video:
    container: str
    codec: str
    width: int
    """Display width (after rotation)."""
    height: int
    duration_s: float
    fps: float | None
    frame_count: int | None
    rotation: int
    creation_time: str | None
    gps: tuple[float, float] | None
    keyframes: list[Keyframe] = field(default_factory=list)
    intra_frames: int = 0
    """How many intra frames pass 1 looked at."""
    truncated_by: str | None = None
    """Why keyframe selection stopped early (max_wall_s, max_scan_keyframes), or left scene changes without a
    keyframe (max_keyframes: more shots than `video_max_keyframes`), or None."""
    decode_s: float = 0.0


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 256 * 1024 * 1024
    max_duration_s: float = 3 * 3600
    max_pixels: int = 8192 * 4352
    max_frames: int = 1_000_000
    max_keyframes: int = 12
    max_scan_keyframes: int = 600
    max_wall_s: float = 30.0
    frame_edge: int = 960
    scene_threshold: float = 0.25
    duplicate_threshold: float = 0.02
    spread_gap_s: float = 12.0

    @classmethod
    def from_settings(cls, cfg: Any) -> "Limits":
        return cls(max_bytes=cfg.video_max_bytes, max_duration_s=cfg.video_max_duration_s,
                   max_pixels=cfg.video_max_pixels, max_frames=cfg.video_max_frames,
                   max_keyframes=cfg.video_max_keyframes, max_scan_keyframes=cfg.video_max_scan_keyframes,
                   max_wall_s=cfg.video_max_wall_s, frame_edge=cfg.video_frame_edge,
                   scene_threshold=cfg.video_scene_threshold,
                   duplicate_threshold=cfg.video_duplicate_threshold, spread_gap_s=cfg.video_spread_gap_s)


def _ffmpeg_words(exc: BaseException | str) -> str:
    """FFmpeg's words without PyAV's wrapping: "[Errno 1094995529] Invalid data found when processing input:
    '<none>'" (an error number that is a tag, the name of a file that has none) -> "not a readable video: invalid
    data" (trial 24 F10)."""
    text = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    text = re.sub(r":\s*'<none>'$", "", re.sub(r"^\[Errno -?\d+\]\s*", "", str(text).strip()))
    if text.lower().startswith("invalid data found"):
        return "not a readable video: invalid data"
    return text


def _corrupt(container: str, exc: BaseException | str, **details: Any) -> PermanentError:
    msg = _ffmpeg_words(exc)
    truncated = any(w in msg.lower() for w in ("truncat", "end of file", "invalid data", "moov atom not found"))
    got = f" (decoded {details['decoded_s']:.1f} s of {details['duration_s']:.1f} s)" if "decoded_s" in details else ""
    return PermanentError(f"corrupt {container} video{' (truncated?)' if truncated else ''}{got}: {msg[:200]}",
                          reason="corrupt_video", details={"format": container, "truncated": truncated, **details})


def _tags(meta: dict[str, str]) -> dict[str, str]:
    """Container tags with lower-case names and no language suffix: Matroska/WebM tags are upper-case and may
    carry one ('LOCATION', 'DATE_RECORDED', 'LOCATION-eng'); MP4/MOV's are lower-case. The first of a name wins."""
    out: dict[str, str] = {}
    for k, v in meta.items():
        name = str(k).lower()
        name = re.sub(r"-[a-z]{3}$", "", name)  # ISO 639-2 language of a Matroska tag
        if isinstance(v, str) and v.strip():
            out.setdefault(name, v)
    return out


def _creation_time(meta: dict[str, str]) -> str | None:
    """'2026-11-18T14:02:11.000000Z' -> '2026-11-18T14:02:11+00:00' (capture_time's ISO form with its offset, as
    preprocess gives a photo's EXIF time with OffsetTimeOriginal: a container's time is UTC, and JSON-LD's
    dateCreated must say so); a time without a zone stays local ('2026:11:18 14:02:11', the EXIF form). Matroska's
    segment date comes as creation_time, its DATE_RECORDED tag is the fallback."""
    raw = meta.get("creation_time") or meta.get("date") or meta.get("date_recorded")
    if not raw:
        return None
    try:
        t = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.year < 1971:  # QuickTime's zero epoch (1904) written by encoders that do not know the time
        return None
    try:
        t = t.astimezone(dt.timezone.utc) if t.tzinfo is not None else t
    except OverflowError:  # past year 9999 in UTC
        return None
    if capture_time(*t.strftime("%Y %m %d %H %M %S").split(), "Z" if t.tzinfo else None) is None:
        return None  # a placeholder far in the future (9999-12-31), as a photo's (domain.capturetime)
    if t.tzinfo is None:
        return t.strftime("%Y:%m:%d %H:%M:%S")
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _gps(meta: dict[str, str]) -> tuple[float, float] | None:
    """ISO 6709 `location` (QuickTime / Apple / Android: '+48.8584+002.2945/'; Matroska/WebM: a `LOCATION` tag,
    as FFmpeg and mkvpropedit write it; RECORDING_LOCATION is a country code, no position)."""
    raw = meta.get("location") or meta.get("com.apple.quicktime.location.iso6709") or ""
    m = _ISO6709.match(raw.strip())
    if not m:
        return None
    lat, lon = float(m.group(1)), float(m.group(2))
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


def _scaled(frame: Any, edge: int) -> Image.Image:
    """The frame as RGB, scaled by swscale so the long edge is at most `edge` (never up)."""
    w, h = frame.width, frame.height
    s = min(1.0, edge / max(w, h))
    return frame.to_image(width=max(2, round(w * s)), height=max(2, round(h * s)))


SIGNATURE_SIZE = (SIGNATURE_EDGE, SIGNATURE_EDGE * 9 // 16)


def _signature(img: Image.Image) -> np.ndarray:
    """A tiny colour copy (a cut between two shots of equal brightness is still a cut)."""
    return np.asarray(img.convert("RGB").resize(SIGNATURE_SIZE, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def _frame_signature(frame: Any, interpolation: str = "AREA") -> np.ndarray:
    """The same from a decoded frame, scaled by swscale straight from its native pixels (no full-size copy)."""
    return np.asarray(frame.to_image(width=SIGNATURE_SIZE[0], height=SIGNATURE_SIZE[1], interpolation=interpolation),
                      dtype=np.float32) / 255.0


def _differ(sig: np.ndarray, others: list[np.ndarray], threshold: float) -> bool:
    return all(float(np.abs(sig - o).mean()) >= threshold for o in others)


def _rotate(img: Image.Image, rotation: int) -> Image.Image:
    """Display rotation (degrees counter-clockwise, FFmpeg's convention) applied to a decoded frame."""
    r = rotation % 360
    if r == 90:
        return img.transpose(Image.Transpose.ROTATE_90)
    if r == 180:
        return img.transpose(Image.Transpose.ROTATE_180)
    if r == 270:
        return img.transpose(Image.Transpose.ROTATE_270)
    return img


def select(candidates: list[tuple[float, float]], signatures: list[np.ndarray], duration_s: float, cap: int,
           threshold: float, duplicate: float = 0.0) -> dict[int, str]:
    """Indices of the chosen candidates (time, scene score) -> why: the first frame, then scene changes (the
    strongest first), then the candidates nearest an even spread over the duration, `cap` in all; a candidate
    that looks like one already chosen (signature difference < `duplicate`) is passed over."""
    if not candidates or cap <= 0:
        return {}
    chosen: dict[int, str] = {0: "first"}
    kept = [signatures[0]]

    def take(i: int, why: str) -> bool:
        if i in chosen or not _differ(signatures[i], kept, duplicate):
            return False
        chosen[i] = why
        kept.append(signatures[i])
        return True

    for i in sorted((i for i, (_, s) in enumerate(candidates) if i and s >= threshold),
                    key=lambda i: -candidates[i][1]):
        if len(chosen) >= cap:
            break
        take(i, "scene")
    slots = cap - len(chosen)
    times = np.array([t for t, _ in candidates])
    for k in range(1, slots + 1):
        target = duration_s * k / (slots + 1)
        for i in np.argsort(np.abs(times - target)):
            if take(int(i), "spread"):
                break
    return chosen


def distinct(keyframes: list[Keyframe], threshold: float) -> list[Keyframe]:
    """The keyframes in time order without those that look like one already kept (mean colour difference of the
    signatures below `threshold`): a static shot gives one keyframe, not twelve copies to OCR and tag."""
    kept: list[Keyframe] = []
    for k in keyframes:
        if k.signature is None or all(float(np.abs(k.signature - o.signature).mean()) >= threshold
                                      for o in kept if o.signature is not None):
            kept.append(k)
    return kept


def long_stretches(have: list[float], duration_s: float, long_gap_s: float) -> list[tuple[float, float]]:
    """(start, end) of the stretches between intra frames `have` (or from the last one to the end) longer than
    `long_gap_s`: there the encoder did not cut at scene changes (a long-GOP file)."""
    bounds = sorted({0.0, *have, duration_s})
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b - a > long_gap_s]


def spread_targets(have: list[float], duration_s: float, want: int, long_gap_s: float) -> list[float]:
    """Times of an even spread (`want` points) that fall in a long stretch (see `long_stretches`): every spread
    time in it is needed, however near it is to the intra frame that opens it; then the end of each long stretch,
    so the decode (and its scene test) reaches the next intra frame or the end of the video."""
    stretches = long_stretches(have, duration_s, long_gap_s)
    out = [t for t in (duration_s * k / (want + 1) for k in range(1, want + 1))
           if any(a + 1e-3 < t <= b for a, b in stretches)]
    return sorted({*out, *(b - 0.01 for _, b in stretches)}) if out else []


def short_clip(have: list[float], duration_s: float, spread_gap_s: float) -> bool:
    """A clip of at most `spread_gap_s` whose intra frames `have` leave a stretch longer than `SCENE_SAMPLE_S`:
    pass 2 scans it through for scene changes, as a VP9 video. Whether its encoder put an intra frame at each cut
    is not known (libx264 at its defaults put one key frame in a 6 s clip of three flat colour cards: predicting
    one flat card from another is cheap, so its scene-cut test saw no cut; trial 35 F6); the decode of a clip
    that short is bounded (~1.8 s for 12 s of 1080p: docs/benchmarks.md, "every scene of a short clip")."""
    return duration_s <= spread_gap_s and bool(long_stretches(have, duration_s, SCENE_SAMPLE_S))


def ranked(keyframes: list[Keyframe], cap: int) -> list[Keyframe]:
    """At most `cap` keyframes in time order, keeping the first frame, then scene changes (the strongest first),
    then the spread."""
    order = sorted(keyframes, key=lambda k: (k.reason != "first", k.reason != "scene", -k.scene_score, k.offset_s))
    return sorted(order[:cap], key=lambda k: k.offset_s)


def extract(data: bytes, container_name: str, limits: Limits) -> Video:
    """The video's facts and its keyframes (see the module doc for the bounds). Raises PermanentError with
    reason corrupt_video, no_video_stream, video_too_long, video_too_large or too_many_frames."""
    import av  # the FFmpeg libraries load on first use of a video, not with every preprocess worker

    if len(data) > limits.max_bytes:
        raise PermanentError(f"video of {len(data)} bytes is over video_max_bytes={limits.max_bytes}",
                             reason="video_too_large", details={"byte_size": len(data)})
    started = time.monotonic()
    try:
        box = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise _corrupt(container_name, exc) from None
    with box:
        if not box.streams.video:
            raise PermanentError(f"{container_name} file has no video stream", reason="no_video_stream",
                                 details={"format": container_name})
        stream = box.streams.video[0]
        cc = stream.codec_context
        cc.thread_count = 1  # the runner parallelises over records: one core per record
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width <= 0 or height <= 0:
            raise _corrupt(container_name, "no frame size in the stream header")
        if width * height > limits.max_pixels:
            raise PermanentError(f"video frames of {width}x{height} are over video_max_pixels={limits.max_pixels}",
                                 reason="video_too_large", details={"width": width, "height": height})
        tb = stream.time_base or Fraction(1, 1_000_000)
        if stream.duration:
            duration = float(stream.duration * tb)
        elif box.duration:
            duration = box.duration / 1_000_000
        else:
            duration = 0.0
        if duration > limits.max_duration_s:
            raise PermanentError(f"video of {duration:.0f} s is over video_max_duration_s={limits.max_duration_s:g}",
                                 reason="video_too_long", details={"duration_s": round(duration, 3)})
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        frames = int(stream.frames or 0) or (round(duration * fps) if fps else None)
        if frames and frames > limits.max_frames:
            raise PermanentError(f"video of {frames} frames is over video_max_frames={limits.max_frames}",
                                 reason="too_many_frames", details={"frames": frames})
        meta = _tags({**dict(box.metadata or {}), **dict(stream.metadata or {})})
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        deadline = started + limits.max_wall_s
        truncated_by: str | None = None

        # pass 1: the key packets only, each decoded on its own, as a small colour signature for scene detection
        cc.skip_frame = "DEFAULT"  # the packet flags choose what is decoded, not the decoder
        cands: list[tuple[float, float]] = []
        sigs: list[np.ndarray] = []
        pts: list[int] = []
        rotation = 0
        try:
            for packet in box.demux(stream):
                if cands and time.monotonic() > deadline:
                    truncated_by = "max_wall_s"
                    break
                if packet.is_corrupt:  # the demuxer flags a packet cut short (a truncated upload) or damaged
                    raise _corrupt(container_name, "a packet is truncated or damaged",
                                   decoded_s=cands[-1][0] if cands else 0.0, duration_s=round(duration, 3))
                if not packet.is_keyframe or packet.pts is None:
                    continue
                if len(cands) >= limits.max_scan_keyframes:  # a key packet beyond the cap: the rest is not seen
                    truncated_by = "max_scan_keyframes"
                    break
                frame = _decode_alone(cc, packet)
                if frame is None:
                    continue
                rotation = int(getattr(frame, "rotation", 0) or 0)
                sig = _frame_signature(frame)
                cands.append((max(0.0, float(packet.pts * tb) - start),
                              1.0 if not sigs else float(np.abs(sig - sigs[-1]).mean())))
                sigs.append(sig)
                pts.append(packet.pts)
        except (av.FFmpegError, ValueError, EOFError) as exc:
            # a cut upload or damaged data: even when its start plays, publishing it would publish a broken video
            raise _corrupt(container_name, exc, decoded_s=cands[-1][0] if cands else 0.0,
                           duration_s=round(duration, 3)) from None
        if not cands:
            raise _corrupt(container_name, "no decodable frame")
        duration = duration or cands[-1][0]
        chosen = select(cands, sigs, duration, limits.max_keyframes, limits.scene_threshold,
                        limits.duplicate_threshold)
        # scene changes among the intra frames that found no room (not a cut back to a shot already chosen)
        no_room = sum(1 for i, (_, score) in enumerate(cands) if i and score >= limits.scene_threshold
                      and i not in chosen and _differ(sigs[i], [sigs[j] for j in chosen], limits.duplicate_threshold))
        # the chosen intra frames again, each after a seek, now scaled to the frame edge (pass 1 kept no pixels)
        got, late = _key_frames(box, stream, [pts[i] for i in sorted(chosen)], limits.frame_edge,
                                deadline if truncated_by is None else None)
        keyframes = [Keyframe(cands[i][0], _rotate(got[pts[i]], rotation), cands[i][1], why, sigs[i])
                     for i, why in sorted(chosen.items()) if pts[i] in got]
        if late:
            truncated_by = "max_wall_s"
        elif len(keyframes) < len(chosen):  # not a cap: a frame pass 1 decoded was not found again after a seek
            log.warning("video: %d of %d chosen keyframes not found again after a seek",
                        len(chosen) - len(keyframes), len(chosen))

        # pass 2: a long-GOP file -> decode forward over the stretches its intra frames leave uncovered, taking the
        # frames at the even-spread times there and the scene changes a cheap test on low-res samples finds
        # -- or a codec whose encoder puts no key frame at scene cuts and whose decoder ignores skip_frame (VP9):
        # every stretch, however short, in one forward decode to the end with the same scene test
        want = limits.max_keyframes - len(keyframes)
        intra = [t for t, _ in cands]
        targets = spread_targets(intra, duration, want, limits.spread_gap_s) if want > 0 else []
        through = cc.name in SCANNED_THROUGH or short_clip(intra, duration, limits.spread_gap_s)
        if (targets or through) and truncated_by is None:
            dropped: list[float] = []
            got, scenes, truncated_by = _frames_at(box, stream, [start + t for t in targets], intra, start, tb,
                                                   limits.frame_edge, deadline, limits.scene_threshold,
                                                   limits.max_keyframes if through else want, through=through,
                                                   dropped=dropped)
            # the scan sees the whole video: its cuts stand for pass 1's (which may be later frames of a shot)
            no_room = len(dropped) if through else no_room + len(dropped)
            if truncated_by == "decode_error":
                raise _corrupt(container_name, "decode error in the middle of the video",
                               decoded_s=max((ft - start for ft, _ in got), default=0.0),
                               duration_s=round(duration, 3))
            if through:
                _cut_before(keyframes, intra, [ft - start for ft, _, _ in scenes])
            keyframes += [Keyframe(max(0.0, ft - start), _rotate(img, rotation), score, "scene", _signature(img))
                          for ft, score, img in scenes]
            keyframes += [Keyframe(max(0.0, ft - start), _rotate(img, rotation), 0.0, "spread", _signature(img))
                          for ft, img in got]
        pool = distinct(sorted(keyframes, key=lambda k: k.offset_s), limits.duplicate_threshold)
        keyframes = ranked(pool, limits.max_keyframes)
        kept = {id(k) for k in keyframes}
        no_room += sum(1 for k in pool if k.reason == "scene" and id(k) not in kept)
        if no_room and truncated_by is None:  # shots that have no keyframe: validate tells the editor
            truncated_by = "max_keyframes"
        if not keyframes:
            raise _corrupt(container_name, "no keyframe could be decoded again after a seek")
    w, h = (height, width) if rotation % 180 == 90 else (width, height)
    return Video(container=container_name, codec=cc.name, width=w, height=h, duration_s=round(duration, 3),
                 fps=round(fps, 3) if fps else None, frame_count=frames, rotation=rotation % 360,
                 creation_time=_creation_time(meta), gps=_gps(meta), keyframes=keyframes,
                 intra_frames=len(cands), truncated_by=truncated_by,
                 decode_s=round(time.monotonic() - started, 3))


def _cut_before(keyframes: list[Keyframe], intra: list[float], cuts: list[float]) -> None:
    """A key frame told apart from the key frame before it ('scene') when a cut between the two was found where it
    is (`cuts`, by the decode through the video): it is a later frame of that shot ('spread'). A cut found on the
    key frame itself (the scan sampled it) leaves it the scene change: the scan's copy is then the duplicate."""
    for k in keyframes:
        before = max((t for t in intra if t < k.offset_s), default=0.0)
        if k.reason == "scene" and any(before < c < k.offset_s - 1e-3 for c in cuts):
            k.reason = "spread"


def _decode_alone(cc: Any, packet: Any) -> Any | None:
    """The frame of one key packet decoded on its own: the decoder is drained and reset after it, so every key
    packet is a fresh start as after a seek (HEVC's CRA pictures then get their own picture order count instead of
    one wrapped from a picture long before). None when the decoder gives no frame for it."""
    frames = [*cc.decode(packet), *cc.decode(None)]
    cc.flush_buffers()
    return next((f for f in frames if f.pts == packet.pts), frames[0] if frames else None)


def _key_frames(box: Any, stream: Any, wanted: list[int], edge: int, deadline: float | None
                ) -> tuple[dict[int, Image.Image], bool]:
    """pts -> the frame of the key packet at that pts scaled to `edge`, each found by a seek and the demux on to
    that packet, decoded on its own. The first is always fetched; the others only before the deadline (None: no
    deadline). Also True when the deadline stopped it."""
    import av

    cc = stream.codec_context
    cc.skip_frame = "DEFAULT"
    out: dict[int, Image.Image] = {}
    for n, p in enumerate(sorted(wanted)):
        if n and deadline is not None and time.monotonic() > deadline:
            return out, True
        try:
            box.seek(p, stream=stream, backward=True, any_frame=False)
            for packet in box.demux(stream):
                if packet.pts is None or not packet.is_keyframe:
                    continue
                if packet.pts == p:
                    frame = _decode_alone(cc, packet)
                    if frame is not None:
                        out[p] = _scaled(frame, edge)
                if packet.pts >= p:
                    break
        except (av.FFmpegError, ValueError, EOFError):
            continue
    return out, False


SCANNED_THROUGH = frozenset({"vp9", "libvpx-vp9"})
"""Decoders (PyAV codec names) whose video is scanned from start to end by pass 2, every stretch between key
frames however short: FFmpeg's vp9 decoder ignores `skip_frame` (each frame is decoded anyway), and libvpx-vp9 at
its defaults puts a key frame every 128 frames and none at scene cuts, so a scene between two key frames was not
looked at."""

SCENE_SAMPLE_S = 0.5
"""Pass 2 compares a 64 px signature of the decoded frames this far apart (stream time) for its scene test."""


def _frames_at(box: Any, stream: Any, times: list[float], intra: list[float], start: float, tb: Fraction,
               edge: int, deadline: float, scene_threshold: float = 1.0, max_scenes: int = 0, through: bool = False,
               dropped: list[float] | None = None
               ) -> tuple[list[tuple[float, Image.Image]], list[tuple[float, float, Image.Image]], str | None]:
    """The first frame at or after each of `times` (seconds, sorted), from one forward decode of reference
    frames: a seek (to the intra frame before a time) only when an intra frame lies between the decoder's
    position and that time. On the way, every `SCENE_SAMPLE_S` a decoded frame is compared (64 px signature) with
    the sample before it: a difference >= `scene_threshold` is a scene change, the `max_scenes` strongest are
    kept (time, score, frame). `through`: one decode from the start of the video to its end, never seeking over
    a stretch, so the scene test sees all of it. `dropped` gets the time of each scene change found with no room
    left (the weaker of the two when one gives way). Stops at the deadline: (frames so far, scenes so far,
    'max_wall_s'); a decode error ends it ('decode_error')."""
    import av

    stream.codec_context.skip_frame = "NONREF"
    out: list[tuple[float, Image.Image]] = []
    scenes: list[tuple[float, float, Image.Image]] = []
    pos = float("-inf")
    pending = list(times)
    prev: np.ndarray | None = None
    sampled = float("-inf")

    def sample(frame: Any) -> None:
        nonlocal prev, sampled
        if pos - sampled < SCENE_SAMPLE_S - 1e-3 or max_scenes <= 0:
            return
        # pass 2's scene test on every sampled frame: swscale's fast bilinear (~0.7 ms instead of ~2 ms from 1080p;
        # within a shot two samples differ by < 0.04, a cut by the same as with the area filter)
        sig = _frame_signature(frame, "FAST_BILINEAR")
        if prev is not None:
            score = float(np.abs(sig - prev).mean())
            if score >= scene_threshold and len(scenes) < max_scenes:
                scenes.append((pos, score, _scaled(frame, edge)))
            elif score >= scene_threshold:  # full: the weakest kept scene (looked for once) gives way to a stronger
                weakest = min(range(len(scenes)), key=lambda i: scenes[i][1])
                if dropped is not None:
                    dropped.append(scenes[weakest][0] if score > scenes[weakest][1] else pos)
                if score > scenes[weakest][1]:
                    del scenes[weakest]
                    scenes.append((pos, score, _scaled(frame, edge)))
        prev, sampled = sig, pos

    frames: Any = None
    try:
        while pending or through:
            t = pending[0] if pending else float("inf")  # through, past the last time: on to the end
            if frames is None or (not through and any(pos < start + c <= t for c in intra)):
                box.seek(int((start if through else t) / tb), stream=stream, backward=True, any_frame=False)
                prev, sampled = None, float("-inf")  # no scene test across a seek
                frames = box.decode(stream)
            # one decode goes on from where the last time's frame was taken (a new one after each seek only): a new
            # decode after the last packet was read would feed the drained decoder again (FFmpeg: "End of file"),
            # which dead-lettered a good long-GOP video whose last spread times came out of the drain
            for frame in frames:
                if time.monotonic() > deadline:
                    return out, scenes, "max_wall_s"
                if frame.pts is None:
                    continue
                pos = float(frame.pts * tb)
                sample(frame)
                if pos + 1e-3 >= t:
                    out.append((pos, _scaled(frame, edge)))
                    while pending and pending[0] <= pos + 1e-3:
                        pending.pop(0)
                    break
            else:
                break  # end of the stream
    except (av.FFmpegError, ValueError, EOFError):
        return out, scenes, "decode_error"
    return out, scenes, None


def poster_index(keyframes: list[Keyframe], min_contrast: float = 8.0) -> int:
    """The keyframe that stands for the video: the first one that is not a flat frame (a fade from black, a
    blank title card), else the first."""
    for i, k in enumerate(keyframes):
        if float(np.asarray(k.image.convert("L"), dtype=np.float32).std()) >= min_contrast:
            return i
    return 0
