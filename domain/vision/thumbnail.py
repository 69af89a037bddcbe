"""The images an asset is shown and embedded by, made once here for everyone: preprocess's JPEG thumbnail (with a
hard byte cap), the smaller preview the index keeps and embeds (index_preview), and, for a query image, the same
chain from its bytes (query_preview): an uploaded copy of an indexed file is prepared exactly as the file was."""
from __future__ import annotations

import io

from PIL import Image

from domain.vision.decode import DEFAULT_FORMATS, Decoded, decode, fast_resize, flat_small
from domain.vision.png import Chunks

THUMBNAIL_EDGE = 768
"""Long edge of the thumbnail preprocess carries in the record (the default of preprocess.thumbnail_edge)."""
THUMBNAIL_MAX_BYTES = 256 * 1024
"""The thumbnail's byte cap (the default of preprocess.thumbnail_max_bytes)."""
THUMBNAIL_QUALITY = 85
"""First JPEG quality tried for the thumbnail (the default of preprocess.thumbnail_quality)."""
WORK_EDGE = 800
"""Smallest long edge the reduced (JPEG draft) decode keeps: enough for faces, OCR gating and hashes."""
PREVIEW_EDGE = 384
"""Long edge of the preview the index keeps for reviewers and embeds (the 768 px thumbnail would triple the index
size)."""


def decode_for_thumbnail(data: bytes, *, max_pixels: int, allowed_formats: list[str] | tuple[str, ...] =
                         DEFAULT_FORMATS, edge: int = THUMBNAIL_EDGE, chunks: Chunks | None = None) -> Decoded:
    """Preprocess's decode of a source file: a JPEG at the reduced DCT scale that keeps max(edge, WORK_EDGE).
    `chunks`: a PNG's chunk list as decode() takes it."""
    return decode(data, max_pixels=max_pixels, allowed_formats=allowed_formats, min_edge=max(edge, WORK_EDGE),
                  chunks=chunks)


def thumbnail_base(img: Image.Image, edge: int = THUMBNAIL_EDGE) -> Image.Image:
    """RGB copy (transparency on white) with long edge <= edge: what the thumbnail encodes, and a cheap source
    for the other small derivatives (hashes, colours, NSFW input). A transparent image is flattened band by band
    while it is shrunk (flat_small: the same pixels, without the ~240 MB full-size flattened copy of an 80 MP
    image, trial 24 F2)."""
    if img.mode != "RGB":
        return flat_small(img, edge, "RGB")
    w, h = img.size
    if max(w, h) > edge:
        s = edge / max(w, h)
        return fast_resize(img, (max(1, round(w * s)), max(1, round(h * s))))
    return img


def encode_thumbnail(base: Image.Image, *, max_bytes: int = THUMBNAIL_MAX_BYTES,
                     quality: int = THUMBNAIL_QUALITY) -> tuple[bytes, int, int]:
    """(jpeg bytes, width, height): quality, then size, lowered until the JPEG fits max_bytes."""
    qualities = [q for q in (quality, 75, 65, 50, 40) if q <= quality]
    cur = base
    while True:
        for q in qualities:
            buf = io.BytesIO()
            cur.save(buf, "JPEG", quality=q, optimize=False, progressive=False)
            if buf.tell() <= max_bytes:
                return buf.getvalue(), cur.width, cur.height
        if max(cur.size) <= 32:
            return buf.getvalue(), cur.width, cur.height  # cannot happen for any sane cap (>= 4 KiB)
        cur = fast_resize(base, (max(1, int(cur.width * 0.75)), max(1, int(cur.height * 0.75))))
        qualities = qualities[-2:]


def make_thumbnail(img: Image.Image, *, edge: int = THUMBNAIL_EDGE, max_bytes: int = THUMBNAIL_MAX_BYTES,
                   quality: int = THUMBNAIL_QUALITY) -> tuple[bytes, int, int]:
    """(jpeg bytes, width, height): long edge <= edge, at most max_bytes."""
    return encode_thumbnail(thumbnail_base(img, edge), max_bytes=max_bytes, quality=quality)


def index_preview(data: bytes, width: int | None, height: int | None,
                  media_type: str = "image/jpeg") -> tuple[bytes, str, int | None, int | None]:
    """(bytes, media type, width, height) of the preview the index keeps (and embeds) for a thumbnail: the
    thumbnail itself up to PREVIEW_EDGE, else a JPEG (quality 80) scaled down to it."""
    if max(width or 0, height or 0) <= PREVIEW_EDGE:
        return data, media_type, width, height
    with Image.open(io.BytesIO(data)) as img:  # our own JPEG from preprocess, already bounded
        img.draft("RGB", (PREVIEW_EDGE, PREVIEW_EDGE))
        img = img.convert("RGB")
        img.thumbnail((PREVIEW_EDGE, PREVIEW_EDGE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
    return buf.getvalue(), "image/jpeg", img.width, img.height


def query_preview(data: bytes, *, max_pixels: int) -> bytes:
    """The preview the index would keep for an image file's bytes: preprocess's decode (EXIF orientation, colour
    modes, reduced JPEG decode), its thumbnail (transparency on white, resampling, JPEG) at the default thumbnail
    settings, then index_preview. Raises streams.errors.PermanentError for bytes that are not an image
    preprocess accepts."""
    thumb, width, height = make_thumbnail(decode_for_thumbnail(data, max_pixels=max_pixels).image)
    return index_preview(thumb, width, height)[0]
