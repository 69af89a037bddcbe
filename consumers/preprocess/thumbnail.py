"""JPEG thumbnail with a hard byte cap."""
from __future__ import annotations

import io

from PIL import Image

from consumers.preprocess.decode import fast_resize, flatten


def thumbnail_base(img: Image.Image, edge: int = 768) -> Image.Image:
    """RGB copy (transparency on white) with long edge <= edge: what the thumbnail encodes, and a cheap source
    for the other small derivatives (hashes, colours, NSFW input)."""
    base = flatten(img)
    w, h = base.size
    if max(w, h) > edge:
        s = edge / max(w, h)
        base = fast_resize(base, (max(1, round(w * s)), max(1, round(h * s))))
    return base


def encode_thumbnail(base: Image.Image, *, max_bytes: int = 256 * 1024, quality: int = 85) -> tuple[bytes, int, int]:
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


def make_thumbnail(img: Image.Image, *, edge: int = 768, max_bytes: int = 256 * 1024,
                   quality: int = 85) -> tuple[bytes, int, int]:
    """(jpeg bytes, width, height): long edge <= edge, at most max_bytes."""
    return encode_thumbnail(thumbnail_base(img, edge), max_bytes=max_bytes, quality=quality)
