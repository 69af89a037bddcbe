"""The face detector (MediaPipe BlazeFace confirmed by the face mesh model, domain/vision/faces.py) on its real model
files (fetched by `make install` / scripts/fetch-models.sh into the default models directory), as preprocess counts
faces with it, and a worker that will not start without the files (issue 15: Haar's false positives and misses).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from app.settings import Settings
from consumers.preprocess import signals
from consumers.preprocess.stage import PreprocessStage
from domain.vision import faces
from tests.preprocess_support import QUALITY_IMAGES


@pytest.fixture(scope="module")
def detector():
    return faces.FaceDetector(cache_dir="off")


def _open(name: str) -> Image.Image:
    return Image.open(QUALITY_IMAGES / name).convert("RGB")


def _near(found, drawn, tolerance: float = 0.25) -> bool:
    """The found box's centre lies within `tolerance` of the drawn box's size from the drawn centre, and its sides
    are within that share of the drawn ones."""
    size = [drawn[2] - drawn[0], drawn[3] - drawn[1]]
    centre = [(found[0] + found[2] - drawn[0] - drawn[2]) / 2, (found[1] + found[3] - drawn[1] - drawn[3]) / 2]
    sides = [found[2] - found[0], found[3] - found[1]]
    return all(abs(c) <= tolerance * s for c, s in zip(centre, size)) and all(
        abs(f - s) <= tolerance * s for f, s in zip(sides, size))


@pytest.mark.parametrize("name, box", [
    # boxes drawn by hand on the images (shares of width/height): forehead to chin, ear to ear
    ("astronaut.jpg", (0.35, 0.15, 0.54, 0.36)),
    ("grace_hopper.jpg", (0.33, 0.24, 0.70, 0.56)),
    ("camera.jpg", (0.36, 0.25, 0.50, 0.39)),  # the cameraman at an angle: both Haar cascades missed him
])
def test_one_face_is_found_on_each_portrait_with_its_box(detector, name, box):
    found = detector.detect(np.asarray(_open(name)))
    assert len(found) == 1, found
    assert found[0].confirmed >= 0.9 and found[0].score >= 0.7, found
    assert _near(found[0].box, box), found


def test_small_faces_and_several_faces_are_counted():
    """A portrait shrunk into a texture (the face ~5 % of the canvas width) and two portraits side by side; on
    a canvas the face's box maps back to where the portrait was pasted."""
    grass = _open("grass.jpg").resize((1024, 768))
    small = _open("astronaut.jpg").resize((205, 205))
    grass.paste(small, (600, 200))
    assert signals.face_count(grass) == 1
    (face,) = faces.FaceDetector(cache_dir="off").detect(np.asarray(grass))
    cx, cy = (face.box[0] + face.box[2]) / 2 * 1024, (face.box[1] + face.box[3]) / 2 * 768
    assert 600 + 0.35 * 205 < cx < 600 + 0.55 * 205 and 200 + 0.15 * 205 < cy < 200 + 0.36 * 205
    pair = Image.new("RGB", (1000, 540), (200, 200, 200))
    pair.paste(_open("astronaut.jpg").resize((480, 480)), (10, 30))
    pair.paste(_open("grace_hopper.jpg").resize((410, 480)), (540, 30))
    assert signals.face_count(pair) == 2


def test_no_face_on_images_haar_or_blazeface_alone_got_wrong():
    """The lower-left quarter of the coins photo at 2x: the two Haar cascades counted a face there (bench/faces.py);
    the cat: BlazeFace alone scores its face 0.83, the face mesh model's face-presence output rejects it."""
    coins = _open("coins.jpg")
    w, h = coins.size
    assert signals.face_count(coins.crop((0, h // 2, w // 2, h)).resize((w, h))) == 0
    for name in ("chelsea.jpg", "chelsea_web.jpg"):
        arr = np.asarray(_open(name))
        det = faces.FaceDetector(cache_dir="off")
        assert any(c.score >= 0.75 for c in det.candidates(arr))  # BlazeFace alone: a face
        assert det.detect(arr) == [] and signals.face_count(_open(name)) == 0


def test_no_face_on_any_non_face_image_of_the_quality_set():
    """Products, documents, logos, textures, backgrounds, drawings, animals, food, coins: 58 images, no face counted."""
    import json

    truth = json.loads((QUALITY_IMAGES.parent / "truth.json").read_text())["images"]
    names = [n for n, t in truth.items() if not t.get("faces")]
    assert len(names) >= 40
    assert {n: c for n in names if (c := signals.face_count(Image.open(QUALITY_IMAGES / n)))} == {}


def test_weighted_nms_merges_overlapping_boxes_by_score():
    """MediaPipe's WEIGHTED suppression: one face seen by two anchors becomes one box between them, nearer the
    better one; a separate face stays separate."""
    boxes = np.array([[0.10, 0.10, 0.30, 0.30], [0.12, 0.12, 0.32, 0.32], [0.60, 0.60, 0.80, 0.80]])
    merged = faces.weighted_nms(boxes, np.array([0.9, 0.3, 0.8]))
    assert [round(s, 2) for s, _ in merged] == [0.9, 0.8]
    np.testing.assert_allclose(merged[0][1], [0.105, 0.105, 0.305, 0.305])
    np.testing.assert_allclose(merged[1][1], boxes[2])


def test_a_worker_without_the_face_model_files_stops_at_start(tmp_path):
    """Preprocess checks the face detector's files when the stage is built (the worker starts): a missing file
    says what to run, a damaged one is refused; with faces off the files are not needed."""
    settings = Settings().with_overrides(vision={"models_dir": str(tmp_path)})
    with pytest.raises(faces.FaceModelUnavailable, match=r"blazeface-back\.json is missing: run `make models`"):
        PreprocessStage(settings)
    for name in faces.MODEL_FILES:
        shutil.copy(faces.check_files(None)[name], tmp_path / name)
    try:
        PreprocessStage(settings)  # all there: starts
        with open(tmp_path / "facemesh.bin", "r+b") as f:
            f.truncate(1000)
        with pytest.raises(faces.FaceModelUnavailable, match="facemesh.bin does not match its sha256"):
            PreprocessStage(settings)
        PreprocessStage(settings.with_overrides(preprocess={"faces_enabled": False}))
    finally:
        signals.configure_faces(None)  # the process's face detector reads the default directory again


def test_the_local_provider_stops_at_start_without_the_face_model_files(tmp_path):
    """The local provider's face check (a face names the alt text's subject) uses the same files."""
    from consumers.enrich.stage import EnrichStage
    from domain.vision import detector as det

    for name in det.MODEL_FILES:  # the object detector's files are there, the face detector's are not
        shutil.copy(det.models_dir() / name, tmp_path / name)
    settings = Settings().with_overrides(enrich={"provider": "local", "dedupe": "off",
                                                 "local_models_dir": str(tmp_path)})
    with pytest.raises(faces.FaceModelUnavailable, match=r"blazeface-back\.json is missing"):
        EnrichStage(settings)


def test_the_converter_translates_blazeface_ops_like_tensorflow_computes_them():
    """The TF ops BlazeFace and the face mesh add to the converter (DepthwiseConv2dNative with a channel multiplier,
    _FusedConv2D with BiasAdd + Relu / Prelu), on a small TFJS graph with random weights, against numpy written from
    TF's definitions (NHWC, SAME padding; depthwise output channel c * multiplier + m)."""
    import base64

    import onnxruntime as ort

    from domain.vision.tfjs import build_onnx

    rng = np.random.default_rng(3)
    w = {"dw": rng.normal(size=(3, 3, 3, 2)).astype(np.float32), "pw": rng.normal(size=(1, 1, 6, 4)).astype(np.float32),
         "b": rng.normal(size=4).astype(np.float32), "a": rng.uniform(0.1, 0.3, size=4).astype(np.float32)}
    b64 = lambda v: base64.b64encode(v.encode()).decode()  # noqa: E731
    conv_attr = {"padding": {"s": b64("SAME")}, "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                 "data_format": {"s": b64("NHWC")}}
    const = lambda n: {"name": n, "op": "Const", "attr": {"value": {"tensor": {"dtype": "DT_FLOAT"}}}}  # noqa: E731
    model = {"modelTopology": {"node": [
        {"name": "input", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [
            {"size": "-1"}, {"size": "6"}, {"size": "6"}, {"size": "3"}]}}}},
        const("dw"), const("pw"), const("b"), const("a"),
        {"name": "depthwise", "op": "DepthwiseConv2dNative", "input": ["input", "dw"], "attr": conv_attr},
        {"name": "relu", "op": "Relu", "input": ["depthwise"]},
        {"name": "fused", "op": "_FusedConv2D", "input": ["relu", "pw", "b", "a"],
         "attr": {**conv_attr, "fused_ops": {"list": {"s": [b64("BiasAdd"), b64("Prelu")]}}}},
        {"name": "Identity", "op": "Identity", "input": ["fused"]},
    ]}}
    graph, shapes = build_onnx(model, w, "ops")
    assert shapes == {"Identity": (1, 6, 6, 4)}
    x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
    got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]

    pad = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    depth = np.zeros((6, 6, 6), np.float32)
    for c in range(3):
        for m in range(2):
            depth[..., c * 2 + m] = sum(pad[i:i + 6, j:j + 6, c] * w["dw"][i, j, c, m] for i in range(3) for j in range(3))
    point = np.maximum(depth, 0) @ w["pw"][0, 0] + w["b"]
    want = np.where(point > 0, point, point * w["a"])
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4)
