"""What an alt text that is no description looks like, shared by validate (an embedded or model alt text that is
a file name is not published) and write-back (a file name in a target is nobody's alt text: an approved alt text
or a decorative decision may replace it).

    PREFIX        a leading "image of" / "picture of" / "photo of" (and similar)
    file_name(t)  a file name or camera-style name ("IMG_4032.JPG", "DSC_0042", "Image of DSC_0042.JPG")
"""
from __future__ import annotations

import re

PREFIX = re.compile(r"^\s*(?:(?:an?|the)\s+)?(?:close[\s\-]?up\s+)?(?:image|picture|photo|photograph|pic|"
                    r"graphic|screenshot|illustration)\s+(?:of|showing|depicting|that shows|with)\s*[:,\-]?\s+",
                    re.I)

FILE_NAME = re.compile(
    r"(?:^\S+\.(?:jpe?g|jpe|jfif|png|webp|tiff?|gif|bmp|heic|heif|avif|jxl|svg|psd|raw|cr[23]|nef|arw|orf|rw2|dng|"
    r"raf|pef|srw)"  # one word ending in an image file's extension (not a sentence that ends in one)
    r"|^(?:IMG|DSC[NF]?|DCIM|PXL|MVIMG|GOPR|GH\d|DJI|SAM|WP|PICT|PANO|VID|P|_MG|_DSC|SDC|CIMG)"
    r"[ _-]?\d{3,}(?:[_-][0-9a-z]+)*)$", re.I)  # or is a camera's / phone's own name for the file


def file_name(text: str | None) -> bool:
    """Whether an alt text is a file name or a camera-style name, not a description ("IMG_4032.JPG",
    "DSC_0042", "Image of DSC_0042.JPG", "red-mug.webp")."""
    t = " ".join((text or "").split())
    while (m := PREFIX.match(t)) and len(t) > m.end():
        t = t[m.end():]
    return bool(t) and FILE_NAME.search(t.strip(" .\"'")) is not None
