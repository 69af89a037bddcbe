"""JPEG thumbnail with a hard byte cap."""
from __future__ import annotations

import io

from PIL import Image

from consumers.preprocess.decode import fast_resize, flatten


def make_thumbnail(img: Image.Image, *, edge: int = 768, max_bytes: int = 256 * 1024,
                   quality: int = 85) -> tuple[bytes, int, int]:
    """(jpeg bytes, width, height): long edge <= edge; quality, then size, lowered until it fits max_bytes."""
    base = flatten(img)
    w, h = base.size
    if max(w, h) > edge:
        s = edge / max(w, h)
        base = fast_resize(base, (max(1, round(w * s)), max(1, round(h * s))))
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
