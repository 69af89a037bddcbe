"""An asset's source as people and files see it: the local path a file:// URI names (its bytes, whatever the file
name's encoding), a source URI fit to show (no credentials, no query string), the name a person recognises, and
the media type of the bytes as sniffed (never the name's extension).

    from domain.sources import file_path, redact, source_label, sniffed_media_type
    file_path("file:///lib/caf%E9.jpg")            # '/lib/caf\\udce9.jpg' as os.fsdecode gives it: opens the file
    source_label("file:///lib/a/b.jpg", ["/lib"])  # 'a/b.jpg'
"""
from __future__ import annotations

import os
import posixpath
import re
import urllib.parse
from pathlib import PurePosixPath
from typing import Any, Iterable

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff",
               "GIF": "image/gif", "BMP": "image/bmp", "HEIF": "image/heif", "AVIF": "image/avif",
               "MP4": "video/mp4", "MOV": "video/quicktime", "WEBM": "video/webm", "MKV": "video/x-matroska"}
"""The media type of each format preprocess sniffs from the bytes (images: domain.vision.decode.sniff; videos:
the container, consumers/preprocess/video.py)."""


def sniffed_media_type(pre: dict[str, Any]) -> str | None:
    """The media type of a PreprocessedAsset's bytes, from the format sniffed from them (the image's format or the
    video's container); None when preprocess sniffed none. An uploader's or server's claimed type (the event's
    `content_type`, a guess from the file name) is not this."""
    video = pre.get("video") or {}
    fmt = video.get("container") or (pre.get("image") or {}).get("format")
    return MEDIA_TYPES.get(str(fmt).upper()) if fmt else None


def redact(uri: str) -> str:
    """A URI safe for logs and error messages: no userinfo, no query string or fragment (may carry tokens)."""
    try:
        p = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<unparseable uri>"
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = p.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))[:300]


def file_path(uri: str) -> str:
    """The local path of a file:// URI as the OS names it. `Path.as_uri()` percent-encodes the name's raw bytes,
    so they are decoded back to bytes and then as the OS does (`os.fsdecode`: a name that is not valid UTF-8,
    e.g. latin-1 `caf\\xe9.jpg`, keeps its bytes as surrogate escapes), never as UTF-8 text with replacement
    characters (which names another, missing, file)."""
    return os.fsdecode(urllib.parse.unquote_to_bytes(urllib.parse.urlsplit(uri).path))


_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on or that reorder what follows: C0 and C1 controls (ESC starts an escape
sequence, a newline a fake row), DEL, the line/paragraph separators and the bidi marks, embeddings, overrides
and isolates."""


def shown(name: str) -> str:
    """A name as text any output can carry: bytes that are not UTF-8 (surrogate escapes from `os.fsdecode`) as
    `\\xNN`, so `caf\\xe9.jpg` is written as the 11 characters `caf\\xe9.jpg`; control and bidi characters
    (_UNSAFE) as their escapes (`\\x1b`, `\\n`, `\\u202e`), so a name or URL from an uploader cannot move a
    terminal's cursor, recolour it or fake a table row (code review 14 M2)."""
    if _has_surrogates(name):
        name = os.fsencode(name).decode("utf-8", "backslashreplace")
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), name)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def source_label(uri: str | None, roots: Iterable[str] = ()) -> str | None:
    """What a person recognises an asset by: for a file:// URI its path relative to the file root that holds it
    (`roots`: e.g. preprocess.file_roots), else its file name; for any other URI the URI without credentials, query
    or fragment (`redact`). Text fit for any output (`shown`); None without a URI."""
    if not uri:
        return None
    if not uri.lower().startswith("file:"):
        return shown(urllib.parse.unquote(redact(uri)))
    path = posixpath.normpath(file_path(uri))
    for given in roots:
        for root in dict.fromkeys((posixpath.normpath(os.fsdecode(given)), os.path.realpath(given))):
            if path != root and PurePosixPath(path).is_relative_to(root):
                return shown(PurePosixPath(path).relative_to(root).as_posix())
    return shown(PurePosixPath(path).name or path)
