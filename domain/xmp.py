"""XMP: the one namespace table and the one hardened packet reader, for reading files (preprocess) and reading
back what we write (domain/render.py, write-back checks).

`xmp_root(packet)` refuses what could hurt a parser (DTDs and entities: no expansion, no external entities;
packets over MAX_XMP_BYTES), finds the `x:xmpmeta` (or bare `rdf:RDF`) element, drops the control characters
sloppy writers leave, and returns the parsed element, or None for anything malformed.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

ASSETSTREAM_NS = "https://assetstream.io/ns/xmp/1.0/"
NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    "plus": "http://ns.useplus.org/ldf/xmp/1.0/",
    "cc": "http://creativecommons.org/ns#",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "assetstream": ASSETSTREAM_NS,
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MAX_XMP_BYTES = 2 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def q(prefix: str, name: str) -> str:
    """ElementTree's {uri}name for a prefixed XMP name."""
    return f"{{{NS[prefix]}}}{name}"


def xmp_root(packet: str | bytes | None) -> ET.Element | None:
    if not packet or len(packet) > MAX_XMP_BYTES:
        return None
    text = packet.decode("utf-8", "replace") if isinstance(packet, bytes) else str(packet)
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        return None
    start = text.find("<x:xmpmeta")
    if start < 0:
        start = text.find("<rdf:RDF")
    if start < 0:
        return None
    end_tag = "</x:xmpmeta>" if text.startswith("<x:xmpmeta", start) else "</rdf:RDF>"
    end = text.rfind(end_tag)
    if end < start:
        return None
    try:
        return ET.fromstring(_CONTROL.sub("", text[start:end + len(end_tag)]))
    except ET.ParseError:
        return None
