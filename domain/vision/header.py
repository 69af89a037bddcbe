"""An image file's pixel limit, checked from its header before any pixel is decoded. Shared by the safe decode
(domain/vision/decode.py: preprocess dead-letters a decompression bomb) and search's query-image check
(domain/store/vectors.py: an uploaded query image that is too large is refused with 400)."""
from __future__ import annotations

import io
import re

from PIL import Image


class TooManyPixels(Exception):
    """More pixels than the limit. `width` and `height` come from the header; both are None when Pillow refused
    the file before giving them (its own hard limit), and `pixels` is then the count its error names, if any."""

    def __init__(self, width: int | None, height: int | None, pixels: int | None, limit: int) -> None:
        super().__init__(f"{pixels if pixels is not None else 'too many'} pixels is over the limit of {limit}")
        self.width, self.height, self.pixels, self.limit = width, height, pixels, limit


def open_header(data: bytes, max_pixels: int, formats: list[str] | None = None) -> Image.Image:
    """The image opened from its header (no pixel decoded yet), when it has at most `max_pixels`; else
    TooManyPixels. Bytes Pillow cannot open raise what Pillow raises."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        # Pillow refuses at 2x its own limit (179 MP) while opening the header: a max_pixels set above that would
        # never be reached. Raised (never lowered) to ours, so its hard error stays a backstop beyond our check.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:  # the caller's limit, not Pillow's, is the one to quote
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = _header_size(data, formats)
        raise TooManyPixels(*(size or (None, None)), size[0] * size[1] if size else
                            int(found.group(1)) if found else None, max_pixels) from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise TooManyPixels(w, h, w * h, max_pixels)
    return img


def _header_size(data: bytes, formats: list[str] | None) -> tuple[int, int] | None:
    """The width and height the header claims, of a file Pillow refused to open over its own hard limit: its format
    plugin is run without Image.open's size check (it reads the header only; no pixel is decoded), so a dead letter
    can say '30000x30000', not only '900000000 pixels'. None when no plugin reads the header."""
    Image.init()
    for fmt in formats or Image.ID:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None or (accept is not None and not accept(data[:16])):
            continue
        try:
            with factory(io.BytesIO(data)) as img:
                return img.size
        except Exception:  # noqa: BLE001 - the size is a nicety in a refusal that stands anyway
            continue
    return None
