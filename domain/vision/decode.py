"""Safe image decoding with Pillow: magic-number sniffing, format allow-list, pixel limit, reduced-size decode,
EXIF orientation, normalisation of odd modes (CMYK, 16-bit, palette, alpha) to RGB/RGBA, and colour management
(an embedded ICC profile other than sRGB converted to sRGB).
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from domain.store.degraded import METADATA_SKIPPED
from domain.vision import png
from domain.vision.header import TooManyPixels, open_header
from domain.vision.png import ICC_CHUNK, MAX_PNG_ANCILLARY, MAX_PNG_CHUNKS, METADATA_CHUNKS, TEXT_CHUNKS
from streams.errors import PermanentError

log = logging.getLogger(__name__)

# Pillow warns above Image.MAX_IMAGE_PIXELS; we enforce our own limit before loading pixels, so the warning
# is noise. (Its hard error at 2x still fires and is mapped to decompression_bomb below.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False
cv2.setNumThreads(1)  # the runner parallelises over records: one core per record, also for resizes

try:  # HEIC/HEIF only if a wheel that supports it is installed
    import pillow_heif  # type: ignore

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except Exception:  # noqa: BLE001
    HEIF_AVAILABLE = False


def sniff(data: bytes) -> str | None:
    """Format from magic numbers (never from headers or file names), or None if it is not a known image."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(data) > 26:
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"):
            return "HEIF"
    return None


def _describe_non_image(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "HTML page"
    if head.startswith((b"<?xml", b"<svg")):
        return "XML/SVG document (vector images are not accepted)"
    if head.startswith((b"{", b"[")):
        return "JSON document"
    if head.startswith(b"%pdf"):
        return "PDF document"
    return "unrecognised data"


@dataclass
class Decoded:
    image: Image.Image
    """Oriented, RGB or RGBA, at least `min_edge` on the long side when the source allows (reduced decode)."""
    width: int
    """Full (oriented) width of the source."""
    height: int
    format: str
    mode: str
    """The source's pixel mode before normalisation (e.g. CMYK, I;16, P)."""
    orientation: int | None
    has_alpha: bool
    exif: Image.Exif | None
    info: dict[str, Any] = field(default_factory=dict)
    source: Image.Image | None = None
    """The opened source image object (metadata access: IPTC, XMP)."""
    colour: str | None = None
    """What colour management did: `converted to sRGB from <profile>`, `ICC profile ignored: <why>`, or None (no
    profile, or an sRGB one)."""
    metadata_skipped: str | None = None
    """Why the file's embedded metadata was not read (a PNG whose text/XMP/ICC chunks inflate past Pillow's limits:
    the pixels were decoded without those chunks, `without_png_chunks`), or None."""


def open_checked(data: bytes, *, max_pixels: int, allowed_formats: list[str] | tuple[str, ...],
                 chunks: png.Chunks | None = None) -> tuple[Image.Image, str]:
    """Open (header only) after sniffing; refuses non-images, disallowed formats and bombs (the pixel limit:
    domain.vision.header, shared with search's query-image check), and a PNG of too many chunks (`chunks`: the
    walk of `data`'s chunk list when the caller has it, `png.walk`; walked here when not)."""
    fmt = sniff(data)
    if fmt is None:
        raise PermanentError(f"not an image: {_describe_non_image(data)}", reason="not_an_image",
                             details={"looks_like": _describe_non_image(data)})
    allowed = {f.upper() for f in allowed_formats}
    if fmt not in allowed or (fmt == "HEIF" and not HEIF_AVAILABLE):
        raise PermanentError(f"unsupported image format {fmt}", reason="unsupported_format", details={"format": fmt})
    if fmt == "PNG":
        _bounded(chunks if chunks is not None else png.walk(data))  # before Pillow walks them
    try:
        img = open_header(data, max_pixels, formats=[fmt] if fmt != "HEIF" else None)
    except TooManyPixels as exc:  # the header's size when it gave one; else the count Pillow's refusal named
        shape = {"width": exc.width, "height": exc.height} if exc.width is not None and exc.height is not None else {}
        size = (f"{exc.width}x{exc.height} = {exc.pixels} pixels" if shape
                else f"{exc.pixels} pixels" if exc.pixels is not None else "the image")
        raise PermanentError(f"decompression bomb: {size} is over max_pixels={max_pixels}",
                             reason="decompression_bomb", details=shape) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct_error()) as exc:
        raise _metadata_too_large(exc, fmt) or PermanentError(
            f"corrupt {fmt} image: {_short(exc)}", reason="corrupt_image", details={"format": fmt}) from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise PermanentError(f"corrupt {fmt} image: zero size", reason="corrupt_image", details={"format": fmt})
    return img, fmt


def struct_error():
    import struct
    return struct.error


def _metadata_too_large(exc: BaseException, fmt: str) -> PermanentError | None:
    """Pillow's refusal of a PNG text/XMP/ICC chunk that inflates past MAX_TEXT_CHUNK (1 MiB), or of text chunks
    over MAX_TEXT_MEMORY in all (a zip bomb in the metadata): a valid image, not a corrupt one."""
    text = str(exc)
    if not isinstance(exc, ValueError) or not ("MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text):
        return None
    from PIL import PngImagePlugin
    chunk = "MAX_TEXT_MEMORY" not in text
    limit = PngImagePlugin.MAX_TEXT_CHUNK if chunk else PngImagePlugin.MAX_TEXT_MEMORY
    what = "a text/XMP or ICC chunk inflates" if chunk else "its text chunks together inflate"
    return PermanentError(f"metadata block too large: {what} past {limit // (1024 * 1024)} MiB (Pillow's "
                          f"{'MAX_TEXT_CHUNK' if chunk else 'MAX_TEXT_MEMORY'}); the pixels were not read. Strip or "
                          "shrink the embedded metadata and publish the image again",
                          reason="metadata_too_large", details={"format": fmt, "limit_bytes": limit})


_OBJECT_AT = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


def _short(exc: BaseException) -> str:
    """The library's words, without the memory address Pillow names its buffer by (`cannot identify image file
    <_io.BytesIO object at 0x7f…>`): the same fault reads the same in every dead letter, and letters group."""
    return _OBJECT_AT.sub("the data", str(exc) or type(exc).__name__)[:200]


DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP", "HEIF")


def header_size(data: bytes, *, max_pixels: int, allowed_formats: list[str] | tuple[str, ...] = DEFAULT_FORMATS,
                chunks: png.Chunks | None = None) -> tuple[int, int, str] | None:
    """(width, height, format) as stored, from the header alone (no pixel decoded); None for data decode() will
    refuse. A PNG whose metadata chunks are over Pillow's limits (decode() reads it without them) gives the size its
    IHDR chunk states: nothing is rewritten to size it (code review 15 H1). `chunks`: as open_checked's."""
    try:
        img, fmt = open_checked(data, max_pixels=max_pixels, allowed_formats=allowed_formats, chunks=chunks)
    except PermanentError as exc:
        if not _strippable(exc):
            return None
        return _png_ihdr_size(data, max_pixels)
    w, h = img.size
    img.close()
    return w, h, fmt


def _png_ihdr_size(data: bytes, max_pixels: int) -> tuple[int, int, str] | None:
    """The size in a PNG's IHDR chunk (the first one, right after the signature), or None when there is none or
    it is over `max_pixels` (decode() refuses it)."""
    if data[12:16] != b"IHDR" or len(data) < 24:
        return None
    w, h = struct.unpack_from(">II", data, 16)
    return (w, h, "PNG") if 0 < w * h <= max_pixels else None


def decoded_size(width: int, height: int, fmt: str, min_edge: int | None) -> tuple[int, int]:
    """The size decode(min_edge=...) decodes a `width` x `height` image of `fmt` at: a JPEG at the DCT scale Pillow's
    draft picks (the long edge still >= min_edge), anything else at full size."""
    w, h = width, height
    if fmt == "JPEG" and min_edge and max(w, h) > min_edge:
        scale = min_edge / max(w, h)
        k = min(w // max(1, int(w * scale + 0.999)), h // max(1, int(h * scale + 0.999)))
        s = next(a for a in (8, 4, 2, 1) if k >= a)
        return -(-w // s), -(-h // s)
    return w, h


def decoded_pixels(data: bytes, *, max_pixels: int, allowed_formats: list[str] | tuple[str, ...] = DEFAULT_FORMATS,
                   min_edge: int | None = 1024) -> int:
    """The pixels decode() will hold for `data`, from the header alone: a JPEG at its reduced DCT scale (as
    Pillow's draft picks it), anything else at full size; 0 for data decode() will refuse."""
    head = header_size(data, max_pixels=max_pixels, allowed_formats=allowed_formats)
    if head is None:
        return 0
    w, h = decoded_size(*head, min_edge)
    return w * h


def decode(data: bytes, *, max_pixels: int, allowed_formats: list[str] | tuple[str, ...] = DEFAULT_FORMATS,
           min_edge: int | None = 1024, chunks: png.Chunks | None = None) -> Decoded:
    """Decode `data` safely. With min_edge, JPEGs are decoded at a reduced DCT scale (draft mode) that still
    leaves the long edge >= min_edge; other formats decode fully. min_edge=None decodes at full size.

    A PNG whose text/XMP chunks or ICC profile inflate past Pillow's limits (a zip bomb in the metadata, or just
    a huge XMP history) is decoded again without them: without its text chunks (tEXt, zTXt, iTXt), else without its
    ICC profile (iCCP), else without both (the first that decodes: a small XMP with an oversized profile is still
    read). The dropped chunks are never inflated (`without_png_chunks` reads their lengths only); Pillow inflates a
    kept one at most to its limit, as in the first try. `Decoded.metadata_skipped` says what was not read.

    A PNG's chunk list is walked once (`png.walk`; `chunks`: that walk when the caller has it) for the bound, the
    strip and every try."""
    if chunks is None:
        chunks = png.walk(data)
    try:
        return _decode(data, max_pixels=max_pixels, allowed_formats=allowed_formats, min_edge=min_edge, chunks=chunks)
    except PermanentError as exc:
        if not _strippable(exc) or chunks is None:
            raise
        refused = exc
    for drop in (TEXT_CHUNKS, ICC_CHUNK, METADATA_CHUNKS):
        stripped, dropped = without_png_chunks(data, drop, chunks)
        try:
            d = _decode(stripped, max_pixels=max_pixels, allowed_formats=allowed_formats, min_edge=min_edge,
                        chunks=chunks.without(drop))
        except PermanentError as exc:
            if exc.reason == "metadata_too_large":
                continue
            raise
        d.metadata_skipped = _skipped_note(refused, drop, dropped)
        log.info("decode: %s", d.metadata_skipped)
        return d
    raise refused


def _bounded(chunks: png.Chunks) -> None:
    """Refuses a PNG whose chunk list (`png.walk`) passed a limit: more than MAX_PNG_ANCILLARY ancillary chunks
    (`metadata_too_large`) or more than MAX_PNG_CHUNKS chunks (`corrupt_image`)."""
    if chunks.ancillary > MAX_PNG_ANCILLARY:
        raise PermanentError(
            f"metadata too large: more than {MAX_PNG_ANCILLARY} ancillary (text, private, ...) chunks, where a "
            "PNG has a few dozen; the pixels were not read. Strip the embedded metadata and publish the image "
            "again", reason="metadata_too_large", details={"format": "PNG", "limit_chunks": MAX_PNG_ANCILLARY})
    if chunks.chunks > MAX_PNG_CHUNKS:
        raise PermanentError(f"corrupt PNG image: more than {MAX_PNG_CHUNKS} chunks", reason="corrupt_image",
                             details={"format": "PNG", "limit_chunks": MAX_PNG_CHUNKS})


def _strippable(exc: PermanentError) -> bool:
    """A refusal decode() gets past by dropping the metadata chunks: Pillow's, of a chunk inflating past its limits
    (not the refusal of too many chunks)."""
    return exc.reason == "metadata_too_large" and "limit_chunks" not in (exc.details or {})


def without_png_chunks(data: bytes, drop: frozenset[bytes], chunks: png.Chunks) -> tuple[bytes, list[str]]:
    """The PNG `data` with the chunks of the types in `drop` left out, and what they were ("XMP", "text", "ICC
    profile"). `chunks`: png.walk(data), the metadata chunks' spans (`Chunks.without(drop)` is the result's). The
    other chunks are copied as they are (their CRCs stay valid), the gaps between the dropped chunks joined once; a
    dropped chunk is never inflated, only its keyword (up to the first NUL, at most 79 bytes) is looked at to tell
    XMP from other text. A chunk list that does not parse is left as it is from there on (Pillow then says what is
    wrong with it)."""
    view = memoryview(data)
    keep: list[memoryview] = []
    dropped: list[str] = []
    pos = 0
    for start, end, kind in chunks.metadata:
        if kind not in drop:
            continue
        keyword = bytes(view[start + 8:min(end - 4, start + 88)]).split(b"\0", 1)[0]
        what = ("ICC profile" if kind == b"iCCP" else "XMP" if keyword == b"XML:com.adobe.xmp" else "text")
        if what not in dropped:
            dropped.append(what)
        keep.append(view[pos:start])
        pos = end
    keep.append(view[pos:])
    return b"".join(keep), dropped


def _skipped_note(refused: PermanentError, drop: frozenset[bytes], dropped: list[str]) -> str:
    """The degraded note of a PNG decoded without the chunks of `drop`: why, what was not read (`dropped`), and what
    that means for a person (the creator, credit and rights the file may state are unknown; its colours as stored)."""
    text, icc = bool(drop & TEXT_CHUNKS), bool(drop & ICC_CHUNK)
    if text and "MAX_TEXT_MEMORY" in str(refused):
        limit = int((refused.details or {}).get("limit_bytes") or 0) // (1024 * 1024)
        why = f"its text chunks together inflate past {limit} MiB"
    else:
        why = f"{'an XMP/text chunk' if text else ''}{' and ' if text and icc else ''}" \
              f"{'its ICC profile' if icc else ''} {'inflate' if text and icc else 'inflates'} past 1 MiB"
    means = (["any creator, credit or rights the file states are unknown"] if text else []) + \
            (["colours as stored, no ICC profile applied"] if icc else [])
    return f"{METADATA_SKIPPED}: {why}; not read: {', '.join(dropped)} ({'; '.join(means)})"


def _decode(data: bytes, *, max_pixels: int, allowed_formats: list[str] | tuple[str, ...],
            min_edge: int | None, chunks: png.Chunks | None) -> Decoded:
    img, fmt = open_checked(data, max_pixels=max_pixels, allowed_formats=allowed_formats, chunks=chunks)
    src_mode = img.mode
    w, h = img.size
    try:
        if fmt == "JPEG" and min_edge and max(w, h) > min_edge:
            scale = min_edge / max(w, h)
            img.draft("RGB" if src_mode not in ("L", "CMYK") else src_mode,
                      (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
        # the first frame (page) is the one decoded: a file opens on it. Pillow's n_frames is not asked: it walks
        # every frame of a GIF to count them (seconds for a hostile one); domain/vision/frames.py counts, bounded
        # load before reading EXIF: a PNG's getexif() loads the image to find an eXIf chunk after the pixels, and a
        # broken data stream raised there was swallowed as "broken EXIF" while the load after it returned the
        # half-read image (trial 22: a corrupt PNG indexed as an asset)
        img.load()
        try:
            exif = exif_only(img)
        except Exception:  # noqa: BLE001 - broken EXIF must not sink a good image
            exif = None
        orientation = None
        if exif is not None:
            o = exif.get(0x0112)
            orientation = o if isinstance(o, int) and 1 <= o <= 8 else None
        info = dict(img.info)
        oriented = img
        if orientation and orientation != 1:
            try:
                oriented = ImageOps.exif_transpose(img)
            except (KeyError, TypeError, AttributeError):  # broken EXIF: keep the stored orientation
                oriented, orientation = img, None
            if orientation in (5, 6, 7, 8):
                w, h = h, w
        work = _normalise(oriented)
        icc = info.get("icc_profile")
        colour = to_srgb(work, icc, source_mode=src_mode) if icc else None
    except Image.DecompressionBombError as exc:
        raise PermanentError(f"decompression bomb: {exc}", reason="decompression_bomb") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error(), MemoryError) as exc:
        too_large = _metadata_too_large(exc, fmt)
        if too_large is not None:
            raise too_large from None
        msg = _short(exc)
        truncated = "truncat" in msg.lower() or isinstance(exc, EOFError)
        raise PermanentError(f"corrupt {fmt} image{' (truncated)' if truncated else ''}: {msg}",
                             reason="corrupt_image", details={"format": fmt, "truncated": truncated}) from None
    has_alpha = work.mode == "RGBA" and work.getextrema()[3][0] < 255
    if work.mode == "RGBA" and not has_alpha:
        work = work.convert("RGB")
    return Decoded(image=work, width=w, height=h, format=fmt, mode=src_mode, orientation=orientation,
                   has_alpha=has_alpha, exif=exif, info=info, source=img, colour=colour)


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_PROFILE_SPACE = {"RGB": ("RGB", "RGBA")}
"""The modes an ICC profile of each colour space describes: RGB profiles only (a CMYK file's press profile is not
applied yet: Pillow's plain CMYK -> RGB as before); a grey source with an RGB profile (a mismatch) is left as it is,
as browsers do."""
_transforms: OrderedDict[tuple[str, str], tuple[Any, str] | str] = OrderedDict()
_transforms_lock = threading.Lock()


def _transform(icc: bytes, mode: str) -> tuple[Any, str] | str:
    """(ImageCms transform to sRGB for `mode`, profile description), or a string: why there is none (unreadable
    profile, sRGB already, a colour space that is not the image's). Answers are kept for the last 32 profiles (a
    library holds a handful: the cameras' sRGB, Display P3, Adobe RGB, ProPhoto)."""
    key = (hashlib.sha1(icc).hexdigest(), mode)
    with _transforms_lock:
        if key in _transforms:
            _transforms.move_to_end(key)
            return _transforms[key]
    out = _build_transform(icc, mode)
    with _transforms_lock:
        _transforms[key] = out
        while len(_transforms) > 32:
            _transforms.popitem(last=False)
    return out


def _build_transform(icc: bytes, mode: str) -> tuple[Any, str] | str:
    try:
        prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (prof.profile.profile_description or "").strip() or "unnamed profile"
        space = (prof.profile.xcolor_space or "").strip()
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return "ICC profile ignored: unreadable"
    if "srgb" in desc.lower():
        return "sRGB"
    if mode not in _PROFILE_SPACE.get(space, ()):
        return f"ICC profile ignored: a {space or 'unknown'} profile on a {mode} image"
    try:
        return ImageCms.buildTransform(prof, _SRGB, mode, mode, ImageCms.Intent.PERCEPTUAL), desc
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError) as exc:
        return f"ICC profile ignored: {_short(exc)}"


def to_srgb(img: Image.Image, icc: bytes, *, source_mode: str | None = None) -> str | None:
    """Convert an RGB or RGBA image whose pixels are in the ICC profile `icc` to sRGB, in place (no second copy of
    a large image; alpha kept), and say what was done (trial 24 F3: a ProPhoto orange, (212,89,32) in a browser,
    was previewed and colour-tagged by its raw (150,90,40), a dull brown). `source_mode` is the file's own mode
    (a palette image normalised to RGB is converted; a greyscale one with an RGB profile is not). An unreadable or
    mismatched profile leaves the pixels as they are (the image is still indexed); an sRGB one needs nothing.
    Done on the decoded image, before any derivative: thumbnail, OCR, hashes, colours, faces all see sRGB."""
    if img.mode not in ("RGB", "RGBA"):
        return None
    grey = bool(source_mode) and source_mode[0] in "LIF1"  # L, LA, I;16, F, 1: normalised from grey
    t = _transform(icc, source_mode if grey else img.mode)
    if isinstance(t, str):
        if t != "sRGB":
            log.debug("decode: %s", t)
        return None if t == "sRGB" else t
    transform, desc = t
    try:
        transform.apply_in_place(img)
    except (OSError, ImageCms.PyCMSError, ValueError) as exc:
        return f"ICC profile ignored: {_short(exc)}"
    return f"converted to sRGB from {desc}"


_XMP_KEYS = ("XML:com.adobe.xmp", "xmp")


def exif_only(img: Image.Image) -> Image.Exif:
    """img.getexif() without Pillow's XMP fallback: Pillow fills a missing EXIF orientation (0x0112) from an XMP
    tiff:Orientation, which browsers ignore (a file with only the XMP one shows unrotated: trial 24 F9). The
    result is cached on the image, so ImageOps.exif_transpose and the metadata readers see the same EXIF."""
    hidden = {k: img.info.pop(k) for k in _XMP_KEYS if k in img.info}
    try:
        return img.getexif()
    finally:
        img.info.update(hidden)


def _normalise(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, or RGBA when the source carries transparency."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "RGBA":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") or (mode == "I" and hi > 255):
            arr = arr / (65535.0 if hi > 255 else 255.0) * 255.0
        elif mode == "F" and hi <= 1.0 and lo >= 0.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        return img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return img.convert("RGBA")
    if mode == "L" and "transparency" in img.info:
        return img.convert("RGBA")
    if mode == "RGB" and "transparency" in img.info:
        return img.convert("RGBA")
    if mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB")


def flatten(img: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """RGB copy; transparency composited on a white background."""
    if img.mode == "RGB":
        return img
    if img.mode == "RGBA":
        bg = Image.new("RGB", img.size, background)
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    return img.convert("RGB")


BAND_PIXELS = 1_000_000
"""source pixels flattened at a time by flat_small (1 MP bands stay in the CPU caches: an 80 MP transparent image
is shrunk in ~0.3 s, faster than flattening it whole, ~0.5 s, and than with 4 MP bands, ~0.8 s)"""


def flat_small(img: Image.Image, edge: int, mode: str = "L") -> Image.Image:
    """`resized(flatten(img).convert(mode), edge)` (transparency on white, long edge at most `edge`) without a
    full-size flattened copy (~240 MB RGB for an 80 MP image): the image is flattened and box-reduced by the
    same integer factor resized's first step takes, a band of rows (a multiple of that factor, ~BAND_PIXELS) at
    a time, then resized the rest of the way. The pixels are the same."""
    w, h = img.size
    scale = edge / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    k = min(w // size[0], h // size[1]) if scale < 1 else 1
    if k < 2:
        return resized(flatten(img).convert(mode), edge)
    out = reduce_in_bands(img, (k, k), (lambda band: flatten(band)) if mode == "RGB" else
                          (lambda band: flatten(band).convert(mode)))
    return fast_resize(out, size)  # resized's size from the source's, not from the reduced one's (1 px apart)


def reduce_in_bands(img: Image.Image, factor: tuple[int, int], prepare) -> Image.Image:
    """`prepare(img).reduce(factor)` a band of rows (a multiple of the factor, ~BAND_PIXELS) at a time: the same
    pixels without prepare's full-size copy (a flatten, a premultiplied RGBa)."""
    w, h = img.size
    kx, ky = factor
    rows = ky * max(1, BAND_PIXELS // (w * ky))
    out = None
    for top in range(0, h, rows):
        band = prepare(img.crop((0, top, w, min(h, top + rows)))).reduce(factor)
        if out is None:
            out = Image.new(band.mode, (-(-w // kx), -(-h // ky)))
        out.paste(band, (0, top // ky))
    return out


def fast_resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Downscale to `size`: an integer box reduce (Pillow) down to < 2x, then OpenCV bilinear for the rest.
    Several times faster than Pillow's resampling filters, and alias-free enough for thumbnails and hashes."""
    w, h = img.size
    tw, th = max(1, size[0]), max(1, size[1])
    if (tw, th) == (w, h):
        return img.copy()
    k = min(w // tw, h // th)
    if k >= 2:
        img = img.reduce(k)
    if img.mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    out = cv2.resize(np.asarray(img), (tw, th), interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(out, img.mode)


def resized(img: Image.Image, edge: int) -> Image.Image:
    """Copy scaled so the long edge is at most `edge` (never upscaled)."""
    w, h = img.size
    if max(w, h) <= edge:
        return img.copy()
    s = edge / max(w, h)
    return fast_resize(img, (max(1, round(w * s)), max(1, round(h * s))))
