"""Search counts every tenant's documents: a document's id is tenant-scoped (domain.events.scoped_id: `acme::a1`)
while its hit says asset_id `a1`, so the total and facets of semantic search and "more like this" must count by
document id. Two tenants with the same asset ids, written by the real IndexSink into a real osmem-server, asked
over real HTTP (the review app's search API)."""
from __future__ import annotations

import json
import re
from collections import Counter
from urllib.parse import unquote

import httpx
import pytest

from app.review.server import ReviewServer
from tests.review_support import SAMPLES, jpeg_thumbnail
from tests.store_support import index_all, settings_for, validated_asset

pytestmark = pytest.mark.timeout(300)
TOKEN = "tenant-search-token"

#: (tenant, asset id, status): the same asset ids in both tenants; acme's wait for review
ASSETS = [("default", "a1", "auto_applied"), ("default", "a2", "auto_applied"), ("default", "a3", "auto_applied"),
          ("acme", "a1", "needs_review"), ("acme", "a2", "needs_review")]


MUG = "product_red_mug.jpg"


@pytest.fixture(scope="module")
def settings(store):
    records = [validated_asset(aid, 1, title=f"Red running shoe {n}", alt_text="a red running shoe on white",
                               tags=[("product", "shoe")], status=status, ocr_text="", tenant=tenant)
               for n, (tenant, aid, status) in enumerate(ASSETS)]
    for r in records:  # both tenants' a1 show the same mug: a preview and an image vector
        if r["enriched"]["pre"]["asset"]["asset_id"] == "a1":
            r["enriched"]["pre"]["thumbnail"] = jpeg_thumbnail(MUG)
    return index_all(settings_for(store.url), records)


@pytest.fixture(scope="module")
def api(settings):
    with ReviewServer(settings, port=0, token=TOKEN) as srv:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            yield c


def _statuses(answer: dict) -> dict[str, int]:
    return {b["value"]: b["count"] for b in answer["facets"]["status"]}


def test_semantic_total_and_facets_count_every_tenants_documents(api):
    answer = api.get("/v1/search", params={"query": "running shoe", "mode": "semantic", "size": 20}).json()
    assert answer["mode"] == "semantic"
    assert sorted(h["asset_id"] for h in answer["hits"]) == ["a1", "a1", "a2", "a2", "a3"]  # public fields as before
    assert answer["total"] == len(answer["hits"]) == 5
    assert _statuses(answer) == dict(Counter(h["status"] for h in answer["hits"])) == \
        {"auto_applied": 3, "needs_review": 2}


def test_similar_total_and_facets_count_every_tenants_documents(api):
    for doc_id in ("acme::a1", "a1"):  # from another tenant's asset, and from the default tenant's
        answer = api.get(f"/v1/assets/{doc_id}/similar", params={"by": "text", "size": 20}).json()
        assert answer["total"] == len(answer["hits"]) == 4, doc_id
        assert _statuses(answer) == dict(Counter(h["status"] for h in answer["hits"])), doc_id
    assert _statuses(answer) == {"auto_applied": 2, "needs_review": 2}


def _keys(answer: dict) -> list[tuple[str, str]]:
    return sorted((h["tenant"], h["asset_id"]) for h in answer["hits"])


def test_a_portal_tells_tenants_apart_and_addresses_their_assets(api, settings):
    """Trial 12 finding 1: hits said no tenant, `tenant=acme` was ignored, and acme's `a1` (the id its hit gives)
    could not be used with /similar (404; only the internal `acme::a1` worked)."""
    everything = api.get("/v1/search", params={"query": "running shoe", "mode": "keyword"}).json()
    assert _keys(everything) == sorted((t, a) for t, a, _ in ASSETS)
    for mode in ("keyword", "semantic", "hybrid"):
        acme = api.get("/v1/search", params={"query": "running shoe", "mode": mode, "tenant": "acme"}).json()
        assert _keys(acme) == [("acme", "a1"), ("acme", "a2")] and acme["total"] == 2, mode
    assert _keys(api.get("/v1/search", params={"tenant": "default"}).json()) == \
        [("default", "a1"), ("default", "a2"), ("default", "a3")]
    assert _keys(api.get("/v1/search", params={"family": "a1", "tenant": "acme"}).json()) == [("acme", "a1")]
    near = api.get("/v1/assets/a1/similar", params={"tenant": "acme", "by": "text", "size": 20}).json()
    assert ("acme", "a1") not in _keys(near) and ("default", "a1") in _keys(near) and near["total"] == 4
    assert ("default", "a1") not in _keys(api.get("/v1/assets/a1/similar", params={"by": "text"}).json())
    missing = api.get("/v1/assets/a3/similar", params={"tenant": "acme"})
    assert missing.status_code == 404 and "tenant acme" in missing.json()["error"]
    for path, params in (("/v1/search", {"tenant": "ac me"}), ("/v1/assets/acme::a1/similar", {"tenant": "acme"})):
        r = api.get(path, params=params)
        assert r.status_code == 400 and "tenant" in r.json()["error"], r.text
    from typer.testing import CliRunner

    from app.cli import app

    env = {"ASSETSTREAM_INDEX__INDEX": settings.index.index, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless"}
    got = CliRunner().invoke(app, ["search", "--tenant", "acme", "--json", "--es-url", settings.index.url], env=env)
    assert got.exit_code == 0, got.output
    assert _keys(json.loads(got.output)) == [("acme", "a1"), ("acme", "a2")]


def test_each_hit_names_its_preview_opened_with_the_same_credentials(api):
    """Trial 29 finding 8: no hit named an image URL (`/thumb/{id}` worked, but only review.md said so, and another
    tenant's asset needs its scoped id there). Every hit, of a search and of "more like this", has `thumb_url`: a
    path on the API's own origin that answers the image with the same bearer token, and 401 without it."""
    answer = api.get("/v1/search", params={"query": "running shoe", "mode": "keyword"}).json()
    urls = {(h["tenant"], h["asset_id"]): h["thumb_url"] for h in answer["hits"]}
    assert urls == {("default", "a1"): "/thumb/a1", ("default", "a2"): "/thumb/a2", ("default", "a3"): "/thumb/a3",
                    ("acme", "a1"): "/thumb/acme::a1", ("acme", "a2"): "/thumb/acme::a2"}
    for key in (("default", "a1"), ("acme", "a1")):
        r = api.get(urls[key])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8", key
        assert httpx.get(api.base_url.join(urls[key])).status_code == 401, key
    assert api.get(urls[("acme", "a2")]).status_code == 404  # no preview
    near = api.get("/v1/assets/a1/similar", params={"tenant": "acme", "by": "text"}).json()
    assert {(h["tenant"], h["asset_id"]): h["thumb_url"] for h in near["hits"]}[("default", "a1")] == "/thumb/a1"


def test_the_default_tenants_scoped_id_names_its_asset(api):
    """Trial 29 finding 8: a client building `${tenant}::${asset_id}` for every hit got 404 for `default::a1` in
    /v1/assets/{id}/similar (only the bare `a1` worked). `default::` is accepted wherever a scoped id is."""
    bare = api.get("/v1/assets/a1/similar", params={"by": "text"}).json()
    scoped = api.get("/v1/assets/default::a1/similar", params={"by": "text"})
    assert scoped.status_code == 200, scoped.text
    assert _keys(scoped.json()) == _keys(bare) and ("default", "a1") not in _keys(bare)
    assert _keys(api.get("/v1/search", params={"family": "default::a1"}).json()) == [("default", "a1")]
    r = api.get("/thumb/default::a1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    r = api.get("/v1/assets/default::a1/similar", params={"tenant": "acme"})
    assert r.status_code == 400 and "already names its tenant" in r.json()["error"]


def _queue(c: httpx.Client) -> list[str]:
    """The document ids the queue (every status) links to."""
    return sorted({unquote(m) for m in re.findall(r'href="/asset/([^"?]+)', c.get("/", params={"status": "all"}).text)})


def test_a_desk_scoped_to_one_tenant_never_shows_or_decides_on_another_tenants_assets(api, settings):
    """Trial 12: one review token read (and decided on) every tenant's assets. An app with review.tenants=[acme]
    serves acme's assets alone; default's a1 (the same asset id) is as unknown to it as an asset never indexed."""
    assert _queue(api) == ["a1", "a2", "a3", "acme::a1", "acme::a2"]  # unscoped: every tenant, as before
    assert api.get("/thumb/a1").status_code == 200
    scoped = settings.with_overrides(review={"tenants": ["acme"]})
    mug = {"content": (SAMPLES / MUG).read_bytes(), "headers": {"Content-Type": "image/jpeg"}}
    with ReviewServer(scoped, port=0, token=TOKEN) as srv, \
            httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        queue = c.get("/", params={"status": "all"}).text
        assert _queue(c) == ["acme::a1", "acme::a2"]
        assert "tenant: <b>acme</b>" in queue and re.search(r"auto applied <b>0</b>", queue)  # header counts too
        assert c.get("/asset/acme::a1").status_code == 200
        for path in ("/asset/a1", "/thumb/a1"):  # another tenant's asset: 404 like an unknown one
            assert c.get(path).status_code == 404 == c.get(path.replace("a1", "nope")).status_code, path
        csrf = re.search(r'name="csrf" value="([^"]+)"', queue).group(1)
        r = c.post("/decide/a1", data={"csrf": csrf, "verdict": "approve"})
        # refused, nothing sent: the asset's page with the form posted back (307, trial 34 F3), saying why
        assert r.status_code == 307 and "no asset 'a1' in the index" in unquote(r.headers["location"].replace("+", " "))
        r = c.post("/bulk-approve", data={"csrf": csrf, "scope": "selected", "ids": ["a1", "a2"]})
        assert "0 assets approved" in unquote(r.headers["location"].replace("+", " "))
        assert "assetstream_review_decisions_total{" not in c.get("/metrics").text  # nothing was sent

        found = c.get("/v1/search", params={"query": "running shoe", "mode": "hybrid"}).json()
        assert _keys(found) == [("acme", "a1"), ("acme", "a2")] and _statuses(found) == {"needs_review": 2}
        assert _keys(c.get("/v1/search", params={"tenant": "acme"}).json()) == [("acme", "a1"), ("acme", "a2")]
        near = c.get("/v1/assets/a1/similar", params={"tenant": "acme", "by": "text", "size": 20}).json()
        assert _keys(near) == [("acme", "a2")] and near["total"] == 1
        by_upload = c.post("/v1/similar", **mug).json()
        assert _keys(by_upload) == [("acme", "a1")], by_upload  # default's a1 is the same mug
        for r in (c.get("/v1/search", params={"tenant": "default"}),
                  c.get("/v1/assets/a1/similar", params={"tenant": "default"}),
                  c.post("/v1/similar", params={"tenant": "default"}, **mug)):
            assert r.status_code == 403 and "serves only acme" in r.json()["error"], r.text
        other, unknown = c.get("/v1/assets/a1/similar"), c.get("/v1/assets/nope/similar")
        assert other.status_code == unknown.status_code == 404
        assert other.json()["error"] == unknown.json()["error"].replace("nope", "a1")
        # trial 19 (6): no pointer to tenant=NAME, which this desk refuses (403)
        assert other.json()["error"] == "this app holds no asset a1 of tenant default (it serves only acme)"
        # trial 19 (7): a repeated single-valued parameter is a 400 naming it, not "the last one wins"
        for params in ([("tenant", "default"), ("tenant", "acme")], [("size", "1"), ("size", "2")]):
            r = c.get("/v1/search", params=params)
            assert r.status_code == 400 and f"{params[0][0]} is given 2 times" in r.json()["error"], r.text
        assert c.get("/v1/search", params=[("tag", "product:shoe"), ("tag", "product:shoe")]).status_code == 200
    assert _keys(api.post("/v1/similar", **mug).json()) == [("acme", "a1"), ("default", "a1")]


def test_a_scoped_search_never_reads_another_tenants_family(settings):
    """Review 12: `family=a1` on an app scoped to acme looked the default tenant's a1 up by id and echoed its
    family id (`request.family`): another tenant's asset ids could be probed and their families read. Such a member
    is answered as an unknown one, without reading it."""
    from app.review.queries import Scope
    from app.review.search_api import scoped_request
    from domain.store.api import resolve_family
    from domain.store.client import make_client
    from domain.store.management import read_alias

    client = make_client(settings)
    alias = read_alias(settings.index)
    doc = client.get(index=alias, id="a2")["_source"]
    try:  # default's a2 made a copy in a family whose canonical member is another document
        client.index(index=alias, id="a2", document={**doc, "family_id": "canon-7"}, refresh=True)
        acme, everyone = Scope(("acme",)), Scope(())
        assert resolve_family(client, settings, scoped_request({"family": "a2"}, ("family",), everyone)).family \
            == "canon-7"  # an unscoped app reads it, as the docs say
        for member in ("a2", "default::a2"):
            got = resolve_family(client, settings, scoped_request({"family": member}, ("family",), acme))
            unknown = resolve_family(client, settings, scoped_request({"family": member.replace("a2", "zz9")},
                                                                      ("family",), acme))
            assert got.family != "canon-7" and got.family == unknown.family.replace("zz9", "a2"), member
    finally:
        client.index(index=alias, id="a2", document=doc, refresh=True)
        client.close()


@pytest.fixture(scope="module")
def two_desks(settings):
    """Two desks on one host sharing one session secret (one config file), each scoped to its tenant."""
    shared = settings.with_overrides(review={"session_secret": "one-secret-for-both-desks"})
    with ReviewServer(shared.with_overrides(review={"tenants": ["acme"]}), port=0, token="acme-token") as acme, \
            ReviewServer(shared.with_overrides(review={"tenants": ["default"]}), port=0, token="default-token") as dflt:
        yield acme, dflt


def _login(desk: ReviewServer) -> tuple[str, str]:
    """(name, value) of the session cookie the desk sets at login."""
    r = httpx.get(desk.login_url)
    assert r.status_code == 303
    return next(iter(r.cookies.items()))


def test_a_desks_session_is_refused_by_another_desk_sharing_its_secret(two_desks):
    """Trial 19 (1): logged in at acme's desk only, its cookie (and CSRF token) opened and decided at the other
    tenant's desk when both used one review.session_secret. Every signature is bound to its desk: 401 there."""
    acme, dflt = two_desks
    (acme_name, acme_value), (dflt_name, _) = _login(acme), _login(dflt)
    assert httpx.get(f"{acme.url}/", cookies={acme_name: acme_value}).status_code == 200
    for name in {acme_name, dflt_name}:  # under either desk's cookie name
        r = httpx.get(f"{dflt.url}/", cookies={name: acme_value})
        assert r.status_code == 401 and "acme::a1" not in r.text, name
    r = httpx.get(f"{dflt.url}/", cookies={dflt_name: acme_value})
    assert "belongs to another desk: sign in again" in " ".join(r.text.split())


def test_two_desks_on_one_host_keep_their_sessions_in_one_browser(two_desks):
    """Trial 19 (2): both desks set one cookie name, which a browser keeps per host (not port): signing in at the
    second desk signed the editor out of the first."""
    acme, dflt = two_desks
    with httpx.Client(follow_redirects=True) as browser:  # one cookie jar
        assert browser.get(acme.login_url).status_code == 200 and browser.get(dflt.login_url).status_code == 200
        assert len(browser.cookies) == 2
        assert "acme::a1" in browser.get(f"{acme.url}/", params={"status": "all"}).text
        queue = browser.get(f"{dflt.url}/", params={"status": "all"})
        assert queue.status_code == 200 and "acme::a1" not in queue.text


def test_a_family_listed_on_an_asset_page_is_of_its_own_tenant(settings):
    """Review 12: a document indexed without a `tenant` (the default tenant's, from before tenants) listed as its
    family every document naming its asset id, another tenant's namesake `acme::a1` included."""
    from app.review.queries import Index
    from domain.store.client import make_client

    client = make_client(settings)
    try:
        family = Index(client, settings).duplicate_family({"asset_id": "a1", "duplicate_of": None})
    finally:
        client.close()
    assert [(m.get("tenant"), m["asset_id"]) for m in family] == []  # a1 alone in its family, acme's a1 is not kin


def test_a_desk_for_a_tenant_the_index_does_not_hold_says_so_at_start(settings):
    """Leftover of trial 19: `assetstream review --tenant ACME` for acme's assets served an empty queue and said
    nothing (tenant names are case-sensitive). Its start-up names the tenant the index has no asset of, and the
    names it does hold; a desk bound to every interface prints a URL a browser elsewhere can open, not 0.0.0.0.
    Trial 31: a desk's tenants that no write-back target serves are noted at start (their approvals are written
    to no DAM or site)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}, "PYTHONPATH": str(root),
           "ASSETSTREAM_INDEX__URL": settings.index.url, "ASSETSTREAM_INDEX__SERVER_MODE": "serverless",
           "ASSETSTREAM_INDEX__INDEX": settings.index.index, "COLUMNS": "200",
           "ASSETSTREAM_WRITEBACK__TARGETS": '[{"name": "dam", "url": "https://dam.example/{asset_id}", '
                                             '"tenants": ["acme"]}]'}
    desk = subprocess.Popen([sys.executable, "-m", "app.cli", "review", "--host", "0.0.0.0", "--port", "0",
                             "--tenant", "ACME", "--tenant", "acme", "--tenant", "globex"], cwd=root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        started = desk.stdout.readline()
    finally:
        desk.send_signal(signal.SIGINT)
        _, err = desk.communicate(timeout=30)
    assert started.startswith(f"review: http://{socket.gethostname()}:"), (started, err)
    said = " ".join(err.split())
    assert "no asset of tenant 'ACME' in the index; the index has acme (tenant names are case-sensitive)" in said
    assert "no asset of tenant 'globex' in the index; the index has acme, default" in said
    assert "tenant 'acme'" not in said  # it holds acme's
    assert "note: no write-back target serves tenant 'ACME' or 'globex' (dam serves acme): approvals on this desk " \
           "reach the index and search, but no DAM or site" in said, said
