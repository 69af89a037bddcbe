"""JSON-LD and XMP renderings of validated records: they parse, carry the expected properties, escape text,
and the XMP survives being written into a real JPEG and read back."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from app.settings import Settings
from consumers.validate.stage import ValidateStage
from domain.render import parse_xmp, to_jsonld, to_xmp
from domain.xmp import NS
from tests.validate_support import enriched_asset

TRICKY = 'Trail <Runner> & "Friends" \u2014 l\'été \x07bell'


@pytest.fixture(scope="module")
def stage() -> ValidateStage:
    return ValidateStage(Settings())


@pytest.fixture(scope="module")
def record(stage) -> dict:
    return stage.validate(enriched_asset(
        gps=(38.7223, -9.1393), declared_license="https://creativecommons.org/licenses/by/4.0/",
        human_fields={"title": TRICKY, "creator": "María López", "copyright": "© 2026 María López"},
        embedded_meta={"credit_line": "María López / Acme"}))


def test_jsonld_parses_and_carries_the_properties(record):
    doc = json.loads(json.dumps(to_jsonld(record), ensure_ascii=False))
    assert doc["@context"][0] == "https://schema.org" and doc["@type"] == "ImageObject"
    assert doc["name"] == TRICKY  # JSON carries any text; json.dumps escapes it
    assert doc["contentUrl"] == "s3://acme-dam/uploads/asset-0001.jpg"
    assert doc["caption"] == record["caption"] and doc["description"] == record["summary"]
    assert doc["accessibilitySummary"] == record["alt_text"]
    assert {k["termCode"] for k in doc["keywords"]} == {t["tag"] for t in record["tags"]}
    assert all(k["@type"] == "DefinedTerm" and k["inDefinedTermSet"] == "urn:assetstream:taxonomy:v2"
               for k in doc["keywords"])
    assert doc["creator"] == {"@type": "Person", "name": "María López"}
    assert doc["creditText"] == "María López / Acme"
    assert doc["copyrightNotice"] == "© 2026 María López"
    assert doc["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert doc["width"]["value"] == 2400 and doc["height"]["value"] == 1600
    assert doc["encodingFormat"] == "image/jpeg"
    assert {"@type": "PropertyValue", "propertyID": "sha256", "value": "9f" * 32} in doc["identifier"]
    geo = doc["contentLocation"]["geo"]
    assert (geo["latitude"], geo["longitude"]) == (38.7223, -9.1393)
    assert doc["contentLocation"]["address"]["addressCountry"] == "PT"
    assert doc["assetstream:usageFlag"] == "credit_required" and doc["creativeWorkStatus"] == record["status"]
    assert json.loads(doc["assetstream:fieldSources"])["title"] == "human"
    assert doc["accessibilityFeature"] == ["alternativeText"]
    assert schema_org_problems(doc) == []


def test_the_capture_time_keeps_its_time_zone_in_jsonld_and_xmp(stage):
    """Issue 15 item 5: the capture date with its offset into JSON-LD (dateCreated) and the XMP sidecar
    (photoshop:DateCreated, IPTC Core's Date Created): the Paris sample's EXIF DateTimeOriginal + OffsetTimeOriginal
    as the real preprocess reads it; an EXIF time without an offset stays a local time."""
    from consumers.preprocess.metadata import parse_exif

    exif, _ = parse_exif(Image.open("samples/photo_paris_sunset.jpg").getexif())
    assert exif["capture_time"] == "2024-06-21T21:34:10+02:00"
    value = enriched_asset()
    value["pre"]["exif"]["capture_time"] = exif["capture_time"]
    record = stage.validate(value)
    assert to_jsonld(record)["dateCreated"] == "2024-06-21T21:34:10+02:00"
    assert parse_xmp(to_xmp(record))["photoshop:DateCreated"] == "2024-06-21T21:34:10+02:00"
    local = stage.validate(enriched_asset())  # EXIF '2026:11:18 14:02:11', no OffsetTimeOriginal
    assert to_jsonld(local)["dateCreated"] == "2026-11-18T14:02:11"
    assert parse_xmp(to_xmp(local))["photoshop:DateCreated"] == "2026-11-18T14:02:11"
    # trial 24 F5: a record preprocessed before dates were checked renders no invalid xsd:dateTime
    for bad in ("2026-13-45T25:61:61", "2026-02-30T12:00:00", "0001-01-01T00:00:00-25:00",
                "9999-12-31T23:59:59+99:99", "9999-12-31T23:59:59+99:00", "2026:11:18 14:02:60"):
        value = enriched_asset()
        value["pre"]["exif"]["capture_time"] = bad
        record = stage.validate(value)
        assert "dateCreated" not in to_jsonld(record), bad
        assert "photoshop:DateCreated" not in parse_xmp(to_xmp(record)), bad


def test_jsonld_leaves_out_what_is_unknown(stage):
    doc = to_jsonld(stage.validate(enriched_asset(declared_license=None)))
    assert "contentLocation" not in doc and "creator" not in doc and "copyrightNotice" not in doc
    assert all(v not in (None, "", [], {}) for v in doc.values())
    assert all("value" in p for p in doc["identifier"])
    assert doc["assetstream:usageFlag"] == "unknown" and schema_org_problems(doc) == []


def test_xmp_is_well_formed_with_iptc_accessibility_fields(record):
    packet = to_xmp(record)
    assert packet.startswith("<?xpacket begin=") and packet.rstrip().endswith('<?xpacket end="w"?>')
    root = ET.fromstring(packet[packet.index("<x:xmpmeta"):packet.rindex("</x:xmpmeta>") + 12])
    desc = root.find(f"{{{NS['rdf']}}}RDF/{{{NS['rdf']}}}Description")
    alt_li = desc.find(f"{{{NS['Iptc4xmpCore']}}}AltTextAccessibility/{{{NS['rdf']}}}Alt/{{{NS['rdf']}}}li")
    assert alt_li.text == record["alt_text"]
    assert alt_li.get("{http://www.w3.org/XML/1998/namespace}lang") == "x-default"
    ext = desc.find(f"{{{NS['Iptc4xmpCore']}}}ExtDescrAccessibility/{{{NS['rdf']}}}Alt/{{{NS['rdf']}}}li")
    assert ext.text == record["summary"]
    fields = parse_xmp(packet)
    assert fields["dc:title"] == TRICKY.replace("\x07", "")  # XML 1.0 cannot carry control characters
    assert fields["dc:subject"] == [t["label"] for t in record["tags"]]
    assert fields["dc:creator"] == ["María López"]
    assert fields["dc:rights"] == "© 2026 María López"
    assert fields["photoshop:Credit"] == "María López / Acme"
    assert "xmpRights:UsageTerms" not in fields  # a licence URL is the WebStatement, not usage terms (trial 23 B2)
    assert fields["xmpRights:WebStatement"] == "https://creativecommons.org/licenses/by/4.0/"
    assert fields["assetstream:UsageFlag"] == "credit_required"
    assert fields["assetstream:TaxonomyVersion"] == "v2"
    assert fields["assetstream:Reasons"] == record["reasons"]
    assert [p["Task"] for p in fields["assetstream:Provenance"]] == ["tagging", "alt_text", "rights"]


def test_standard_rights_fields_carry_only_the_files_or_a_persons_words(stage):
    """Trial 23 B2, B4, B6: the model's rights paraphrase never lands in xmpRights:UsageTerms / photoshop:Credit
    or schema.org license / creditText (it is in our namespace); xmpRights:Marked is what the file says, never
    derived from our flag; two creators stay two."""
    paraphrase = "Restricted: all rights reserved (© dpa Picture-Alliance)"
    wire = stage.validate(enriched_asset(
        declared_license=None, embedded_meta={"copyright": "© dpa Picture-Alliance", "creator": "Zoë Müller; 山田太郎"},
        enrich={"licensing": paraphrase, "credit_text": "dpa / Picture-Alliance"}))
    assert wire["licensing"] == paraphrase and wire["field_sources"]["licensing"] == "model"
    fields, doc = parse_xmp(to_xmp(wire)), to_jsonld(wire)
    assert "xmpRights:UsageTerms" not in fields and "photoshop:Credit" not in fields
    assert fields["assetstream:SuggestedLicensing"] == paraphrase
    assert fields["assetstream:SuggestedCreditText"] == "dpa / Picture-Alliance"
    assert "license" not in doc and "creditText" not in doc and doc["assetstream:suggestedLicensing"] == paraphrase
    assert fields["xmpRights:Marked"] == "True"  # the file's own copyright notice
    assert fields["dc:creator"] == ["Zoë Müller", "山田太郎"]
    assert doc["creator"] == [{"@type": "Person", "name": "Zoë Müller"}, {"@type": "Person", "name": "山田太郎"}]

    pd_mark = {"license_url": "https://creativecommons.org/publicdomain/mark/1.0/", "rights_marked": False}
    marked = stage.validate(enriched_asset(declared_license=None, embedded_meta=pd_mark))
    assert parse_xmp(to_xmp(marked))["xmpRights:Marked"] == "False"  # the file's word (trial 23: sidecar said True)
    trap = stage.validate(enriched_asset(declared_license=None, embedded_meta={
        "usage_terms": "This image is not royalty-free. Licence fee applies per use."}))
    trap_fields = parse_xmp(to_xmp(trap))
    assert "xmpRights:Marked" not in trap_fields  # nothing in the file says; never "False" from our flag
    assert trap_fields["xmpRights:UsageTerms"] == "This image is not royalty-free. Licence fee applies per use."


def test_xmp_round_trips_through_a_jpeg(record, tmp_path):
    path = tmp_path / "asset-0001.jpg"
    Image.new("RGB", (64, 48), (200, 16, 46)).save(path, "JPEG", xmp=to_xmp(record).encode("utf-8"))
    with Image.open(path) as img:
        meta = img.getxmp()
        fields = parse_xmp(img.info["xmp"])
    desc = meta["xmpmeta"]["RDF"]["Description"]
    assert desc["AltTextAccessibility"]["Alt"]["li"]["text"] == record["alt_text"]
    assert fields["Iptc4xmpCore:AltTextAccessibility"] == record["alt_text"]
    assert fields["dc:title"] == TRICKY.replace("\x07", "")


def test_decorative_image_writes_empty_alt(stage):
    rec = stage.validate(enriched_asset(enrich={"decorative": True, "alt_text": ""}))
    fields = parse_xmp(to_xmp(rec))
    assert fields["Iptc4xmpCore:AltTextAccessibility"] == "" and fields["assetstream:Decorative"] == "True"
    doc = to_jsonld(rec)
    assert "accessibilitySummary" not in doc
    assert doc["assetstream:decorative"] is True and "accessibilityFeature" not in doc


def schema_org_problems(node, where: str = "$", prefixes: frozenset[str] | None = None) -> list[str]:
    """Every property of every typed node must be one schema.org defines for that type (the vocabulary as
    generated into pydantic2-schemaorg); our own terms must use a prefix the document declares in @context."""
    import importlib

    if prefixes is None:
        context = node.get("@context") if isinstance(node, dict) else None
        prefixes = frozenset(k for c in (context if isinstance(context, list) else []) if isinstance(c, dict)
                             for k in c)
    problems: list[str] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            problems += schema_org_problems(item, f"{where}[{i}]", prefixes)
        return problems
    if not isinstance(node, dict):
        return problems
    kind = node.get("@type")
    fields = getattr(importlib.import_module(f"pydantic2_schemaorg.{kind}"), kind).__fields__ if kind else None
    for key, value in node.items():
        if key.startswith("@"):
            continue
        if ":" in key:
            if key.split(":", 1)[0] not in prefixes:
                problems.append(f"{where}.{key}: prefix not declared in @context")
            continue
        if fields is not None and key not in fields:
            problems.append(f"{where}.{key}: not a schema.org property of {kind}")
        problems += schema_org_problems(value, f"{where}.{key}", prefixes)
    return problems


def test_the_vocabulary_check_catches_what_schema_org_lacks(record):
    doc = to_jsonld(record)
    doc["additionalProperty"] = [{"@type": "PropertyValue", "name": "x", "value": 1}]
    doc["contentLocation"]["geo"]["altitude"] = 3
    doc["dam:origin"] = "x"
    assert sorted(schema_org_problems(doc)) == [
        "$.additionalProperty: not a schema.org property of ImageObject",
        "$.contentLocation.geo.altitude: not a schema.org property of GeoCoordinates",
        "$.dam:origin: prefix not declared in @context"]


def test_the_published_media_type_is_the_bytes_not_the_file_name(stage):
    """Trial 24 F6: JPEG bytes in a file named .png were published as `image/png` (JSON-LD encodingFormat and the
    index's content_type: a guess from the extension, preferred over the format sniffed from the bytes). A type
    the DAM claims is kept as claimed (`declared_content_type`), never published as the file's."""
    import io

    from app.producer import build_event
    from consumers.index.document import document_from_validated
    from consumers.preprocess.stage import PreprocessStage

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG")
    preprocess = PreprocessStage(Settings())
    for claimed in (None, "image/png"):
        event = build_event("jpeg_named", "file:///library/jpeg_named.png", content_type=claimed)
        pre = preprocess.preprocess_bytes(event, buf.getvalue())
        assert pre["image"]["format"] == "JPEG"
        rec = enriched_asset()
        rec["pre"] = {**rec["pre"], "asset": event, "image": pre["image"]}
        validated = stage.validate(rec)
        assert to_jsonld(validated)["encodingFormat"] == "image/jpeg"
        _, _, body = document_from_validated(validated)
        assert (body["content_type"], body.get("declared_content_type")) == ("image/jpeg", claimed)
