"""One search API: what `GET /v1/search`, `GET /v1/assets/{id}/similar` (app/review/search_api.py) and
`assetstream search` all run. A SearchRequest is parsed from query parameters (or CLI options) with a clear error
for bad input; `run_search` / `run_similar` return the JSON a client gets:

    {"query": "trainers", "mode": "hybrid", "page": 1, "size": 20, "total": 3,
     "hits": [{"asset_id": ..., "title": ..., "score": ..., ..., "thumb_url": "/thumb/a1"}],
     "facets": {"tags": [{"value": "product:sneaker", "label": "sneaker", "count": 3}, ...], "status": [...],
                "usage_flag": [...],
                "country": [...]},
     "facets_over": "matches",
     "facets_truncated": ["tags"],                      # the facets cut at facet_size (more values exist)
     "facets_other": {"tags": {"values": 12, "count": 17, "values_relation": "eq"},
                      "status": {"values": 0, "count": 0, "values_relation": "eq"}, ...}}

Facets: each is the `facet_size` (default FACET_SIZE = 30, at most MAX_FACET_SIZE) most frequent values, of a
terms aggregation of FACET_SCAN; `facets_other` says what the list leaves out — `values`, the values not listed,
and `count`, the sum of their counts (`values_relation` "gte" past FACET_SCAN values, with the terms
aggregation's `sum_other_doc_count`) — and `facets_truncated` names every facet that was cut, so a client never
takes 30 tags for all of them. Ask for more with `facet_size`.

Modes: keyword = BM25 + vocabulary synonyms; semantic = the kNN leg alone (MiniLM text vectors); hybrid = both
fused by RRF (domain/store/search.py), with the tag leg and the visual leg (image vectors against the ImageNet
classes the query names, domain/vision/prototypes.py) when they apply; a hybrid answer's `visual_leg` says which
classes it used (`{"used": true, "classes": [{"name": "tabby cat", "similarity": 0.62}, ...], "image_model":
{...}}`) or why it took no part (`{"used": false, "reason": ...}`).

Total and facets, the same on every page of one query (docs/index.md, "What `total` means"): keyword mode counts
every match (`facets_over: matches`, exact) and pages through them all; semantic, hybrid and "more like this" are
over the first `window` = index.rrf_window hits of the ranking (result_window: page- and size-independent; as the
Elasticsearch RRF retriever's fixed rank_window_size), `total` = the hits their pages show together, the facets
over those documents (`ranked` / `nearest`), `total_relation` "gte" when the window was filled (more may rank
below it), a page past the window empty. `facets_over` says which.

Each hit's `thumb_url` is its preview on the review app serving the API (thumb_url), its `labelled_tags` its tags with
their vocabulary labels, and each tag bucket has the vocabulary's `label` (for_clients).

Filters apply inside every leg: tags (all), status, usage flag, upload date (`event_time`, UTC days, inclusive), place
(city, region, country or ISO country code, any case, accents folded: place_filter), family (the
family of the asset named: its `family_id`, consumers/index/families.py) and tenant (one tenant's assets; every hit
says its `tenant`, and on "more like this" by asset `tenant` names the asset's tenant instead: document_id). `collapse=true` keeps one
hit per family within the first index.rrf_window * 5 hits, at the rank of its best-ranked member (that member, or
the canonical one when it scores the same: collapse_families); `total` then counts families, `matches` and the
facets the documents.

A query with no letter or digit ("*", "%") or of stop words only ("the", "a of") is answered with nothing, in every
mode (`mode: "keyword"`), and `not_searched` says why (not_searched; null for a query that was searched); one longer than
MAX_TEXT is cut to it, and the answer says `query_truncated: true`. Enum values (mode, status, usage, by, media,
degraded) are taken in any case.
"""
from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import quote

from elasticsearch import Elasticsearch, NotFoundError

from domain.events import DEFAULT_TENANT, MAX_TENANT, TENANT_SEPARATOR, identifier_problem, scoped_id
from domain.store.client import index_settings
from domain.store.degraded import PARTS as DEGRADED_PARTS
from domain.store.management import read_alias
from domain.store.search import (add_snippets, build_filters, content_words, folded, has_word, hybrid_search,
                                 same_score, search, semantic_search, similar, similar_to_image)

if TYPE_CHECKING:
    from domain.taxonomy import Taxonomy

MODES = ("keyword", "semantic", "hybrid")
BY = ("auto", "image", "text")
STATUSES = ("auto_applied", "needs_review", "approved", "rejected")
STATUS_FILTERS = (*STATUSES, "publishable")  # publishable: approved or auto_applied (search.PUBLISHABLE)
USAGE_FLAGS = ("ok", "credit_required", "restricted", "unknown")
MAX_SIZE = 100
MAX_WINDOW = 10_000  # the store's result window: page * size may not pass it
MAX_TEXT = 500
FACETS = {"tags": "tags", "status": "status", "usage_flag": "usage_flag", "country": "place.country",
          "media_type": "media_type"}
MISSING_AS = {"media_type": "image"}
"""A facet's value for the documents that lack its field (documents indexed before video support are images)."""
FACET_SIZE = 30
MAX_FACET_SIZE = 500  # values listed per facet (at most FACET_SCAN)
FACET_SCAN = 1000  # values the store counts per facet (facet_size of them listed, the rest counted): 4 facets x
# 1000 buckets, far below Elasticsearch's search.max_buckets (65,536)


class BadRequest(ValueError):
    """A request that cannot be run; the message says which parameter and why (HTTP 400, CLI exit 2)."""


FILTER_PARAMS = ("tag", "tags", "status", "usage", "usage_flag", "date_from", "date_to", "place", "family", "tenant",
                 "media", "degraded", "collapse", "page", "size", "facets", "facet_size")
SEARCH_PARAMS = ("query", "q", "mode", *FILTER_PARAMS)
"""What GET /v1/search takes (`q` and `usage_flag`: other names of `query` and `usage`, a 400 given with them); anything
else is a 400, so a misspelt filter does not silently answer every asset."""
SIMILAR_PARAMS = ("by", *FILTER_PARAMS)
"""What "more like this" takes (by asset or by upload): it ranks by the asset or image alone, so no query or mode."""
NOT_SIMILAR = {"query": "the query", "q": "the query", "mode": "a mode"}


REPEATABLE = ("tag", "tags")
"""The query parameters that may be given more than once; any other given twice is a BadRequest naming it."""


@dataclass(frozen=True)
class SearchRequest:
    query: str = ""
    query_truncated: bool = False  # the query given was longer than MAX_TEXT: `query` is its first MAX_TEXT characters
    mode: str = "hybrid"
    tags: tuple[str, ...] = ()
    status: str | None = None
    usage: str | None = None
    date_from: str | None = None  # YYYY-MM-DD, upload time (UTC), inclusive
    date_to: str | None = None
    place: str | None = None
    family: str | None = None
    page: int = 1
    size: int = 20
    facets: bool = True
    facet_size: int = FACET_SIZE  # values per facet, most frequent first (facets_truncated: which were cut)
    by: str = "auto"  # similar: "image", "text", or "auto" (the image vector when the asset has one)
    collapse: bool = False  # one hit per duplicate family (its best-ranked member)
    degraded: str | None = None  # only documents marked degraded: "any" or one part (domain/store/degraded.py)
    tenant: str | None = None  # search: only this tenant's assets; similar by asset: the tenant of the asset named
    media: str | None = None  # only images or only videos (MEDIA_TYPES)
    tag_names: tuple[tuple[str, ...], ...] = ()  # each tag with its names across renames (check_vocabulary)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], accepts: tuple[str, ...] | None = None,
                    **defaults: Any) -> "SearchRequest":
        """From URL query parameters (`tag` repeatable, or `tags` comma-separated) or CLI options. `accepts`: the
        parameters the endpoint takes (SEARCH_PARAMS, SIMILAR_PARAMS); any other is a BadRequest naming it."""
        if accepts is not None:
            _known_params(params, accepts)
        getlist = getattr(params, "getlist", None)
        for name in dict.fromkeys(params) if getlist else ():  # `?tenant=a&tenant=b` meant both, or a typo
            given = len(getlist(name))
            if given > 1 and name not in REPEATABLE:
                raise BadRequest(f"{name} is given {given} times: give it once (only tag and tags repeat)")

        def one(name: str) -> str | None:
            v = params.get(name)
            v = v.strip() if isinstance(v, str) else v
            return str(v) if v not in (None, "") else defaults.get(name)

        def either(name: str, other: str) -> str | None:
            """A parameter that has another name (`q` for `query`): one of them, never both (trial 29: `?query=a&q=b`
            searched "a", silently)."""
            if all(params.get(n) not in (None, "") for n in (name, other)):
                raise BadRequest(f"{name} and {other} are given together: {other} is another name of {name}, give "
                                 "one of them once")
            return one(name) or one(other)

        def word(name: str, other: str | None = None) -> str | None:
            """An enum value (mode, status, usage, by, degraded, media), in any case: `status=APPROVED` is approved
            (trial 29: some such values were a 400 in capitals, some were not)."""
            v = either(name, other) if other else one(name)
            return v.lower() if isinstance(v, str) else v

        tags = list(getlist("tag")) if getlist else list(params.get("tag") or [])
        for joined in getlist("tags") if getlist else [params.get("tags")]:
            tags += joined.split(",") if isinstance(joined, str) else list(joined or [])
        query = either("query", "q") or ""
        req = cls(query=query[:MAX_TEXT], query_truncated=len(query) > MAX_TEXT, mode=word("mode") or "hybrid",
                  tags=tuple(dict.fromkeys(t.strip() for t in tags if t and t.strip())),
                  status=word("status"), usage=word("usage", "usage_flag"),
                  date_from=_day("date_from", one("date_from")), date_to=_day("date_to", one("date_to")),
                  place=one("place"), family=one("family"), page=_int("page", one("page"), 1),
                  size=_int("size", one("size"), 20),
                  facets=_flag("facets", one("facets"), True), facet_size=_int("facet_size", one("facet_size"), FACET_SIZE),
                  by=word("by") or "auto", collapse=_flag("collapse", one("collapse"), False), degraded=word("degraded"),
                  tenant=one("tenant"), media=word("media"))
        req.check()
        return req

    def check(self) -> None:
        for name, value, choices in (("mode", self.mode, MODES), ("by", self.by, BY), ("status", self.status, STATUS_FILTERS),
                                     ("usage", self.usage, USAGE_FLAGS), ("media", self.media, MEDIA_TYPES)):
            if value is not None and value not in choices:
                raise BadRequest(f"{name} must be one of {', '.join(choices)}, not {value[:40]!r}"
                                 f"{_did_you_mean(value, choices)}")
        if not 1 <= self.size <= MAX_SIZE:
            raise BadRequest(f"size must be between 1 and {MAX_SIZE}, not {self.size}")
        if not 1 <= self.facet_size <= MAX_FACET_SIZE:
            raise BadRequest(f"facet_size must be between 1 and {MAX_FACET_SIZE}, not {self.facet_size}")
        if self.page < 1 or self.page * self.size > MAX_WINDOW:
            raise BadRequest(f"page must be at least 1 and page * size at most {MAX_WINDOW} (page {self.page}, "
                             f"size {self.size})")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise BadRequest(f"date_from {self.date_from} is after date_to {self.date_to}")
        if self.degraded is not None and self.degraded not in ("any", *DEGRADED_PARTS):
            raise BadRequest(f"degraded must be any or one of {', '.join(DEGRADED_PARTS)}, not "
                             f"{self.degraded[:40]!r}{_did_you_mean(self.degraded, ('any', *DEGRADED_PARTS))}")
        if any(len(t) > 200 for t in self.tags) or len(self.tags) > 20:
            raise BadRequest("at most 20 tags of at most 200 characters each")
        if self.tenant is not None and identifier_problem(self.tenant, MAX_TENANT, scoped=True) is not None:
            raise BadRequest(f"tenant must be a tenant's name (at most {MAX_TENANT} characters, no spaces, no "
                             f"{TENANT_SEPARATOR!r}), not {self.tenant[:40]!r}")

    def check_vocabulary(self, taxonomy: "Taxonomy") -> None:
        """Every tag filter must be a tag of the controlled vocabulary (canonical, or a renamed tag's old name that
        documents may still carry; not a retired one, deprecated with no successor): a filter matches tags exactly, so
        "red" or "trainers" would find nothing.
        The error suggests the canonical tag the word resolves to (label, synonym, plural: "did you mean
        color:red?"), else the closest tags by spelling."""
        for tag in self.tags:
            problem = unknown_tag(tag, taxonomy)
            if problem is not None:
                raise BadRequest(problem[0])
        # documents indexed before a rename carry the old name: a filter on either name matches both
        object.__setattr__(self, "tag_names", tuple(taxonomy.same_tags(t) for t in self.tags))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def filters(self) -> list[dict[str, Any]]:
        """Every filter as store query clauses, all must hold."""
        out = build_filters(self.tag_names or self.tags, self.status, self.usage, self.degraded)
        if self.date_from or self.date_to:
            rng: dict[str, str] = {}
            if self.date_from:
                rng["gte"] = f"{self.date_from}T00:00:00.000Z"
            if self.date_to:
                rng["lt"] = f"{dt.date.fromisoformat(self.date_to) + dt.timedelta(days=1)}T00:00:00.000Z"
            out.append({"range": {"event_time": rng}})
        if self.place:
            out.append(place_filter(self.place))
        if self.family:
            out.append(family_filter(self.family))
        if self.tenant:
            out.append(tenant_filter(self.tenant))
        if self.media:
            out.append(media_filter(self.media))
        return out

    def reads(self, doc_id: str) -> bool:
        """Whether this request may read the document `doc_id` by id (family=ASSET's member): always here; a
        caller limited to some tenants narrows it (app/review/search_api.py ScopedRequest)."""
        return True

    def echo(self, similar: bool = False) -> dict[str, Any]:
        """The request as the response repeats it: the parameters of a search, or of "more like this" (`by`,
        no query or mode)."""
        d = asdict(self)
        d["tags"] = list(self.tags)
        for name in ("tag_names", "query_truncated", *(("query", "mode") if similar else ("by",))):
            del d[name]
        return d


def unknown_tag(tag: str, taxonomy: "Taxonomy") -> tuple[str, list[str]] | None:
    """None when `tag` can filter (a tag of the vocabulary, canonical or renamed: a filter matches tags exactly; a
    retired one, deprecated with no successor, cannot),
    else why not and the tags it may mean: the canonical tag the word resolves to (label, synonym, plural: "photo"
    → content:photo), else the closest tags by spelling. The search API, the CLI and the review queue all say it
    this way: "tag 'photo' is not a tag of the vocabulary (taxonomy v2); tags are facet:value; did you mean
    content:photo?"."""
    if tag in taxonomy.deprecated and taxonomy.current_name(tag) is None:  # trial 29: 200, total 0, silently
        return (f"tag {tag[:60]!r} was retired in taxonomy {taxonomy.version} (deprecated with no successor): it is "
                "no longer a tag, so a filter on it would match nothing; leave it out", [])
    if tag in taxonomy.entries or tag in taxonomy.deprecated:
        return None
    mapped = taxonomy.map(tag)
    close = [mapped.tag] if mapped is not None else \
        _close(tag, [*taxonomy.entries, *(e.value for e in taxonomy.entries.values())], taxonomy)
    return (f"tag {tag[:60]!r} is not a tag of the vocabulary (taxonomy {taxonomy.version}); tags are "
            f"facet:value{_hint(close)}", close)


def _close(value: str, choices: list[str] | tuple[str, ...], taxonomy: "Taxonomy | None" = None) -> list[str]:
    """The closest choices by spelling (bare values mapped to their tags)."""
    close = difflib.get_close_matches(value.lower(), choices, n=2, cutoff=0.75)
    if taxonomy is not None:
        close = [c if c in taxonomy.entries else getattr(taxonomy.map(c), "tag", c) for c in close]
    return list(dict.fromkeys(close))


def _hint(close: list[str]) -> str:
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """"; did you mean X?" for the closest choices by spelling, or ""."""
    return _hint(_close(value, choices))


FLAGS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _flag(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    flag = FLAGS.get(str(value).lower())
    if flag is None:
        raise BadRequest(f"{name} must be true or false, not {str(value)[:40]!r}")
    return flag


def _known_params(params: Mapping[str, Any], accepts: tuple[str, ...]) -> None:
    """BadRequest for the first parameter the endpoint does not take: what it would have meant, and the ones it
    takes (a portal's typo must not answer every asset as if no filter had been given)."""
    for name in params:
        if name in accepts:
            continue
        if name in NOT_SIMILAR:
            raise BadRequest(f"{name} is not used by \"more like this\": it ranks by the asset or image alone, not "
                             f"by {NOT_SIMILAR[name]} (narrow it with tag, status, place, … instead)")
        raise BadRequest(f"unknown parameter {name[:40]!r}{_did_you_mean(name, accepts)}; this endpoint takes "
                         f"{', '.join(accepts)}")


def _day(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise BadRequest(f"{name} must be a date YYYY-MM-DD, not {value[:40]!r}") from None


def _int(name: str, value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number, not {str(value)[:40]!r}") from None


def family_filter(family_id: str) -> dict[str, Any]:
    """The family with this id (the canonical member's asset id); documents indexed before families by their
    duplicate links."""
    return {"bool": {"should": [{"term": {"family_id": family_id}}, {"ids": {"values": [family_id]}},
                                {"term": {"duplicate_of": family_id}}], "minimum_should_match": 1}}


PLACE_FIELDS = ("city", "region", "country")
"""The place fields that hold names (accents fold: place_filter); `country_code` is an ISO code."""
MAX_PLACE_PATTERN = 1000  # Elasticsearch's index.max_regex_length: a longer name is matched as given and folded


def place_filter(place: str) -> dict[str, Any]:
    """A city, region, country or ISO country code, whatever its case ("paris", "FRANCE", "fr") and its accents
    ("Île-de-France" finds "Ile-de-France", and "Curacao" finds "Curaçao"), as the text fields fold them (trial 29,
    finding 7). The place fields are plain keywords (no normalizer: giving them one would need a new mapping version
    and a reindex), so both forms are matched instead: `term` with case_insensitive (Elasticsearch 7.10+, OpenSearch,
    osmem-server) for the name as given and folded, and a `regexp` of the folded name with every letter that has
    accented forms as a class of them (folding_pattern)."""
    plain = folded(place)
    given = [place, *([plain] if plain != place.lower() else [])]
    should: list[dict[str, Any]] = [{"term": {f"place.{k}": {"value": v, "case_insensitive": True}}}
                                    for v in given for k in (*PLACE_FIELDS, "country_code")]
    pattern = folding_pattern(place)
    if len(pattern) <= MAX_PLACE_PATTERN:
        should += [{"regexp": {f"place.{k}": {"value": pattern, "case_insensitive": True}}} for k in PLACE_FIELDS]
    return {"bool": {"should": should, "minimum_should_match": 1}}


@functools.lru_cache(maxsize=1)
def _accented() -> dict[str, str]:
    """Per folded form (one letter, or a ligature's two: "ss" for "ß"), the characters of Latin-1 and Latin
    Extended-A that fold to it (`folded`), upper and lower case: a regexp's case_insensitive folds ASCII only."""
    forms: dict[str, str] = {}
    for c in map(chr, range(0xC0, 0x180)):
        f = folded(c)
        if f != c and f.isascii() and f.isalpha() and 1 <= len(f) <= 2:
            forms[f] = forms.get(f, "") + c
    return forms


def folding_pattern(name: str) -> str:
    """A Lucene regexp matching `name` (folded) with any accents: "zurich" -> "z[uùúûüũūŭůűų…]rich" (each letter
    with accented forms a class of them, each ligature's letters or the ligature), other characters escaped."""
    forms, text, out, i = _accented(), folded(name), [], 0
    while i < len(text):
        pair = text[i:i + 2]
        if len(pair) == 2 and pair in forms:  # "ss": "ss" or "ß"
            out.append(f"({_letter(pair[0], forms)}{_letter(pair[1], forms)}|[{forms[pair]}])")
            i += 2
            continue
        out.append(_letter(text[i], forms))
        i += 1
    return "".join(out)


def _letter(c: str, forms: Mapping[str, str]) -> str:
    return f"[{c}{forms[c]}]" if c in forms else re.sub(r'([.?+*|{}\[\]()"\\#@&<>~^$-])', r"\\\1", c)


MEDIA_TYPES = ("image", "video")
"""What `media=` takes: a document's `media_type` (consumers/index/document.py); one indexed without it (before
video support) is an image."""


def media_filter(media: str) -> dict[str, Any]:
    """Only images or only videos; an image is also a document indexed without `media_type`."""
    if media != "image":
        return {"term": {"media_type": media}}
    return {"bool": {"should": [{"term": {"media_type": media}}, {"bool": {"must_not": {"exists": {"field": "media_type"}}}}],
                     "minimum_should_match": 1}}


def tenant_filter(tenant: str) -> dict[str, Any]:
    """One tenant's documents (their `tenant` field); the default tenant's also those indexed without one."""
    if tenant != DEFAULT_TENANT:
        return {"term": {"tenant": tenant}}
    return {"bool": {"should": [{"term": {"tenant": tenant}}, {"bool": {"must_not": {"exists": {"field": "tenant"}}}}],
                     "minimum_should_match": 1}}


def tenants_filter(tenants: Iterable[str]) -> dict[str, Any]:
    """Any of these tenants' documents: one tenant_filter each, any may match (so the default tenant's also
    include those indexed without a `tenant`)."""
    return {"bool": {"should": [tenant_filter(t) for t in tenants], "minimum_should_match": 1}}


def document_id(asset_id: str, tenant: str | None) -> str:
    """The document id of one tenant's asset, named by the asset id its hits give (domain.events.scoped_id; the
    default tenant when None). An id already scoped (`acme::a1`, the review app's links and `family_id`; `default::a1`
    too: without_default_scope) is taken as it is, unless a tenant is given too (BadRequest: say it once)."""
    if TENANT_SEPARATOR in asset_id:
        if tenant is not None:
            raise BadRequest(f"{asset_id[:80]!r} already names its tenant: give the asset id and tenant={tenant}, "
                             "or the scoped id alone")
        return without_default_scope(asset_id)
    return scoped_id(asset_id, tenant)


def without_default_scope(doc_id: str) -> str:
    """`default::a1` is the default tenant's `a1`, whose document id is bare (scoped_id): a client that builds
    `${tenant}::${asset_id}` for every hit got a 404 for the default tenant's (trial 29, finding 8). Any other id
    as it is."""
    tenant, sep, bare = doc_id.partition(TENANT_SEPARATOR)
    return bare if sep and tenant == DEFAULT_TENANT and bare and TENANT_SEPARATOR not in bare else doc_id


def thumb_url(hit: Mapping[str, Any]) -> str:
    """The hit's preview on the review app serving the API (`/thumb/{document id}`, app/review/web.py): a path on the
    API's own origin, opened with the same credentials; the default tenant's ids bare, another's scoped."""
    aid = hit["asset_id"]
    doc_id = aid if TENANT_SEPARATOR in aid else scoped_id(aid, hit.get("tenant"))
    return "/thumb/" + quote(doc_id, safe=":")


def resolve_family(client: Elasticsearch, settings: Any, req: SearchRequest) -> SearchRequest:
    """family=ASSET names any member: search the family of that member (its family_id); with tenant=T, T's asset
    of that id."""
    if not req.family:
        return req
    req = replace(req, family=scoped_id(req.family, req.tenant) if TENANT_SEPARATOR not in req.family
                  else without_default_scope(req.family))
    if not req.reads(req.family):
        return req  # answered as an unknown member: nothing is looked up, nothing of it echoed
    try:
        doc = client.get(index=read_alias(index_settings(settings)), id=req.family, source_includes=["family_id"])
    except NotFoundError:
        return req
    fid = (doc.get("_source") or {}).get("family_id")
    return replace(req, family=fid) if fid else req


def collapse_families(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One hit per family, at the rank of its best-ranked member, in rank order: that member, or the family's
    canonical member (no `duplicate_of`) when it scores the same (trial 29: copies with the canonical member's text
    tie with it, and the quality-40 JPEG or the thumbnail stood for the family because it sorted first)."""
    at: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for h in hits:
        i = at.setdefault(h["family_id"], len(out))
        if i == len(out):
            out.append(h)
        elif out[i].get("duplicate_of") and not h.get("duplicate_of") and same_score(h["score"], out[i]["score"]):
            out[i] = h
    return out


def collapsed_total(ranked: list[dict[str, Any]], matches: int) -> tuple[int, str]:
    """The total of a collapsed answer: the families among the ranked hits, with its relation like the store's
    `hits.total.relation` — "eq" when the ranked window holds every match, else "gte" (a lower bound: families
    beyond the window are not known; Elasticsearch's own `collapse` reports the uncollapsed count, and a
    cardinality aggregation would be approximate and miss the documents indexed before families)."""
    families = len({h["family_id"] for h in ranked})
    return families, "eq" if len(ranked) >= matches else "gte"


def facet_aggs(size: int = FACET_SIZE) -> dict[str, Any]:
    """Per facet, one terms aggregation of its FACET_SCAN most frequent values (the request's `size` are listed, the
    rest counted: _facets). One aggregation, not a terms aggregation of `size` plus a cardinality aggregation for
    the values left out: the tags come from the vocabulary and the countries are a few hundred, so a facet seldom
    has more values than FACET_SCAN, the store counts them all in the same pass over the matches, and the count of
    the values left out is exact (a cardinality aggregation is approximate, and made the request take twice as long
    on the embedded store: bench/facets.py)."""
    return {name: {"terms": {"field": fld, "size": max(size, FACET_SCAN),
                             **({"missing": MISSING_AS[name]} if name in MISSING_AS else {})}}
            for name, fld in FACETS.items()}


def _facets(aggregations: Mapping[str, Any] | None, size: int = FACET_SIZE) -> dict[str, Any]:
    """{"facets": {name: [{value, count}]}, "facets_other": {name: {values, count, values_relation}},
    "facets_truncated": [name]}: the `size` most frequent values of each facet, and what that list leaves out —
    `values` more values (`values_relation` "gte" when the facet had more than FACET_SCAN: a lower bound) whose
    counts add up to `count` (with the terms aggregation's `sum_other_doc_count`: the values past FACET_SCAN)."""
    aggregations = aggregations or {}
    facets, other, truncated = {}, {}, []
    for name in FACETS:
        agg = aggregations.get(name) or {}
        buckets = [{"value": b["key"], "count": b["doc_count"]} for b in agg.get("buckets", [])]
        beyond = int(agg.get("sum_other_doc_count") or 0)  # uses of the values past FACET_SCAN
        rest = buckets[size:]
        facets[name] = buckets[:size]
        other[name] = {"values": len(rest),  # beyond > 0 only when FACET_SCAN > MAX_FACET_SIZE values came back
                       "count": sum(b["count"] for b in rest) + beyond,
                       "values_relation": "gte" if beyond else "eq"}
        if rest or beyond:
            truncated.append(name)
    return {"facets": facets, "facets_other": other, "facets_truncated": truncated}


NO_FACETS: dict[str, Any] = {"facets": {}, "facets_other": {}, "facets_truncated": []}


def _window_facets(client: Elasticsearch, settings: Any, ids: list[str], filters: list[dict[str, Any]],
                   req: SearchRequest) -> dict[str, Any]:
    """The facets of a ranked window (its document ids), counted by one size-0 request. A window's total is its
    length (what its pages show together), so the store is asked only for facet counts, and only when the request
    wants them."""
    if not req.facets:
        return NO_FACETS
    if not ids:
        return _facets(None)
    resp = client.search(index=read_alias(index_settings(settings)), query=_ids_query(ids, filters), size=0,
                         aggs=facet_aggs(req.facet_size))
    return _facets(resp.get("aggregations"), req.facet_size)


def _ids_query(ids: list[str], filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": [*filters, {"ids": {"values": ids}}]}}


def run_search(client: Elasticsearch, settings: Any, req: SearchRequest, taxonomy: Any = None) -> dict[str, Any]:
    """The search API's answer for one request (see the module docstring)."""
    tax = _checked(settings, req, taxonomy)
    req = resolve_family(client, settings, req)
    filters = req.filters()
    text = req.query.strip()
    # no words: every document the filters allow, newest first; no letter or digit at all ("*", "%", "!") or stop
    # words only ("the", "a of"): nothing, in every mode, saying why (trial 29: the vector legs padded them with
    # 7-50 unrelated hits)
    unsearched = not_searched(text, tax)
    mode = req.mode if text and unsearched is None else "keyword"
    out: dict[str, Any] = {"query": req.query, "query_truncated": req.query_truncated, "mode": mode, "page": req.page,
                           "size": req.size, "collapse": req.collapse, "not_searched": unsearched,
                           "request": req.echo()}
    if unsearched is not None:
        out.update(total=0, total_relation="eq", hits=[], **(_facets(None, req.facet_size) if req.facets else NO_FACETS),
                   facets_over="matches", window=None, **({"matches": 0} if req.collapse else {}))
        return for_clients(out, tax)
    window = result_window(settings, req)
    if mode == "keyword":  # every match, paged by the store (collapsing: the first `window`, then families)
        offset, size = (0, window) if req.collapse else (req.offset, req.size)
        report: dict[str, Any] = {}
        ranked = search(client, settings, text, size=size, taxonomy=tax, filters=filters, offset=offset,
                        aggs=facet_aggs(req.facet_size) if req.facets else None, report=report)
        total, facets = report["total"], _facets(report["aggregations"], req.facet_size) if req.facets \
            else NO_FACETS
        relation = "eq"
        hits = ranked
        over = "matches"
    else:  # the first `window` of the ranking, whatever the page: its total and facets, then its page
        ids: list[str] = []  # document ids (tenant-scoped), not the hits' asset ids
        if mode == "semantic":
            ranked = semantic_search(client, settings, text, filters=filters, size=window, taxonomy=taxonomy,
                                     doc_ids=ids)
            over = "nearest"
        else:
            report = {}
            ranked = hybrid_search(client, settings, text, size=window, taxonomy=taxonomy, filters=filters,
                                   window=window, report=report, highlight=False)  # the page's: below
            ids = report["ranked_ids"]
            over = "ranked"
            out["visual_leg"] = report.get("visual_leg")
        facets = _window_facets(client, settings, ids, filters, req)
        total = len(ranked)  # what its pages show, together
        relation = "gte" if len(ranked) >= window else "eq"  # a full window: more may rank below it
        hits = ranked[req.offset:req.offset + req.size]
    if req.collapse:  # the total counts families, as the hits do; the facets count documents: `matches`
        out["matches"] = total
        total, collapsed = collapsed_total(ranked, total)
        relation = "gte" if relation == "gte" else collapsed
        hits = collapse_families(ranked)[req.offset:req.offset + req.size]
    if mode == "hybrid":  # the snippets of the page shown, not of the whole window (issue 17 latency)
        row = {id(h): i for i, h in enumerate(ranked)}  # the same hit objects: collapse_families picks, never copies
        add_snippets(client, settings, report["keyword_query"], hits, [ids[row[id(h)]] for h in hits])
    out.update(total=total, total_relation=relation, hits=hits, **facets,
               facets_over=over, window=None if mode == "keyword" and not req.collapse else window)
    return for_clients(out, tax)


def not_searched(text: str, taxonomy: "Taxonomy") -> dict[str, str] | None:
    """Why a query is answered with nothing without being searched, or None (searched, or empty: the listing of every
    document the filters allow): `{"reason": "no_word", ...}` for a query with no letter or digit ("*", "%", "½"),
    `{"reason": "stop_words_only", ...}` for one whose every word is a stop word ("the", "a of": content_words), each
    with a `message` a client can show. No text field matches such a query, and the vector legs would only pad the
    answer with the nearest documents of a string that says nothing."""
    if not text:
        return None
    if not has_word(text):
        return {"reason": "no_word", "message": "the query has no letter or digit, so there is nothing to search for"}
    if not content_words(text, taxonomy):
        return {"reason": "stop_words_only", "message": "every word of the query is a stop word (a, the, of, ...), "
                "which matches nothing: add a word that says what to find"}
    return None


def for_clients(answer: dict[str, Any], taxonomy: "Taxonomy") -> dict[str, Any]:
    """What a front-end shows without its own copy of the routes or the vocabulary (trial 29, finding 8): each hit's
    `thumb_url` and `labelled_tags` (its `tags`, in their order, each `{"value", "label"}` as the tag facet's buckets
    say them: an added field, `tags` stays the list of ids), and each tag bucket's vocabulary `label` beside its
    `value` (an added key: clients reading value and count read them as before)."""
    for h in answer["hits"]:
        h["thumb_url"] = thumb_url(h)
        h["labelled_tags"] = [{"value": t, "label": tag_label(t, taxonomy)} for t in h.get("tags") or []]
    tags = answer.get("facets", {}).get("tags")
    if tags:
        answer["facets"]["tags"] = [{"value": b["value"], "label": tag_label(b["value"], taxonomy), "count": b["count"]}
                                    for b in tags]
    return answer


def tag_label(tag: str, taxonomy: "Taxonomy") -> str:
    """A tag's label in the vocabulary (its current name's, for a renamed tag), else its value as words."""
    entry = taxonomy.entries.get(taxonomy.current_name(tag) or tag)
    return entry.label if entry is not None else (tag.partition(":")[2] or tag).replace("-", " ")


def _checked(settings: Any, req: SearchRequest, taxonomy: "Taxonomy | None") -> "Taxonomy":
    """The vocabulary (given, or the deployment's), after checking the request's tag filters against it."""
    from domain.store.search import default_taxonomy

    tax = taxonomy if taxonomy is not None else default_taxonomy(settings)
    req.check_vocabulary(tax)
    return tax


COLLAPSE_FACTOR = 5


def result_window(settings: Any, req: SearchRequest) -> int:
    """How many hits of the ranking an answer is over (semantic, hybrid, similar, and any collapsed answer):
    index.rrf_window, times COLLAPSE_FACTOR when collapsing families (families of up to 5 members still fill
    it), at most the store's result window. The same for every page and size of one query, so its total and
    facets are too, and its pages split one ranking: none overlaps, none skips a hit; past the window a page is
    empty."""
    w = index_settings(settings).rrf_window
    return min(MAX_WINDOW, w * COLLAPSE_FACTOR if req.collapse else w)


def run_similar(client: Elasticsearch, settings: Any, asset_id: str, req: SearchRequest,
                taxonomy: "Taxonomy | None" = None) -> dict[str, Any]:
    """More like this asset: the nearest neighbours of its image vector (by=image), its text vector (by=text),
    or by=auto the image vector when it has one, else the text vector; itself excluded, with the request's
    filters and paging. The asset is `asset_id` of tenant req.tenant (the default tenant when None; or a scoped
    id, `acme::a1`): here `tenant` names the asset, it filters nothing. Raises LookupError when the asset is not
    indexed or has no such vector."""
    tax = _checked(settings, req, taxonomy)
    doc_id = document_id(asset_id, req.tenant)
    req = resolve_family(client, settings, req)
    filters = replace(req, tenant=None).filters()
    own = own_family(client, settings, doc_id) if req.collapse else None
    if own is not None:  # its copies are not "similar" results: they are the asset (trial 29)
        filters = [*filters, {"bool": {"must_not": [family_filter(own)]}}]
    window = result_window(settings, req)
    by = req.by
    ids: list[str] = []
    try:
        near, by = _nearest(client, settings, doc_id, window, filters, by, ids)
    except LookupError as exc:
        if "is not in" in str(exc) and TENANT_SEPARATOR not in asset_id:
            tenant = req.tenant or DEFAULT_TENANT
            raise LookupError(f"asset {asset_id} of tenant {tenant} is not in "
                              f"{read_alias(index_settings(settings))} (another tenant's asset: give the tenant its "
                              "hits say, tenant=NAME or --tenant NAME)") from None
        raise
    answer = _nearest_answer(client, settings, req, near, ids, filters, tax, similar_to=asset_id, by=by)
    answer["excluded_family"] = own
    return answer


def own_family(client: Elasticsearch, settings: Any, doc_id: str) -> str | None:
    """The family id of this document (itself when it has none: a family of one), or None when it is not indexed
    (the nearest-neighbour lookup then says so)."""
    try:
        doc = client.get(index=read_alias(index_settings(settings)), id=doc_id, source_includes=["family_id"])
    except NotFoundError:
        return None
    return (doc.get("_source") or {}).get("family_id") or doc_id


def _nearest(client: Elasticsearch, settings: Any, doc_id: str, window: int, filters: list[dict[str, Any]], by: str,
             ids: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The nearest window to this document by its `by` vector (auto: the image vector, else the text vector)."""
    if by == "auto":
        try:
            near, by = similar(client, settings, doc_id, size=window, filters=filters, by="image",
                               doc_ids=ids), "image"
        except LookupError as exc:
            if "no image vector" not in str(exc):
                raise  # not indexed at all
            near, by = similar(client, settings, doc_id, size=window, filters=filters, by="text",
                               doc_ids=ids), "text"
    else:
        near = similar(client, settings, doc_id, size=window, filters=filters, by=by, doc_ids=ids)
    return near, by


def run_similar_image(client: Elasticsearch, settings: Any, image: bytes, req: SearchRequest,
                      taxonomy: "Taxonomy | None" = None) -> dict[str, Any]:
    """The assets that look most like an uploaded image (exact cosine over at most index.image_scan_limit
    documents on the embedded store, the store's kNN otherwise). Raises BadRequest for bytes that are too many
    or not an image."""
    limit = index_settings(settings).query_image_max_bytes
    if len(image) > limit:
        raise BadRequest(f"the query image is {len(image)} bytes, over the limit of {limit} "
                         "(index.query_image_max_bytes)")
    if not image:
        raise BadRequest("no query image: send the image file as the request body")
    if req.by not in ("auto", "image"):
        raise BadRequest(f"by={req.by} does not apply to an uploaded image: it is compared by its image vector "
                         "(by=image, or leave by out)")
    from domain.store.vectors import query_image_problem

    problem = query_image_problem(image, index_settings(settings).query_image_max_pixels)
    if problem:
        raise BadRequest(problem)
    tax = _checked(settings, req, taxonomy)
    req = resolve_family(client, settings, req)
    filters = req.filters()
    window = result_window(settings, req)
    ids: list[str] = []
    try:
        near = similar_to_image(client, settings, image, filters=filters, size=window, doc_ids=ids)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return _nearest_answer(client, settings, req, near, ids, filters, tax, similar_to="(uploaded image)",
                           by="image")


def _nearest_answer(client: Elasticsearch, settings: Any, req: SearchRequest, near: list[dict[str, Any]],
                    doc_ids: list[str], filters: list[dict[str, Any]], taxonomy: "Taxonomy", *, similar_to: str,
                    by: str) -> dict[str, Any]:
    """The answer over the nearest window `near` (its document ids: doc_ids, the same order)."""
    ranked = collapse_families(near) if req.collapse else near
    out: dict[str, Any] = {"similar_to": similar_to, "mode": "similar", "by": by, "page": req.page,
                           "size": req.size, "collapse": req.collapse, "request": req.echo(similar=True),
                           "hits": ranked[req.offset:req.offset + req.size]}
    facets = _window_facets(client, settings, doc_ids, filters, req)
    total = len(near)
    if req.collapse:  # the nearest window is the whole result set: its families; the facets count `matches`
        out["matches"], total = total, len(ranked)
    window = result_window(settings, req)
    out.update(total=total, total_relation="gte" if len(near) >= window else "eq",
               **facets, facets_over="nearest", window=window)
    return for_clients(out, taxonomy)


def indexed_ids(client: Elasticsearch, settings: Any, ids: list[str]) -> set[str]:
    """Which of these document ids (tenant-scoped: domain.events.scoped_id) the read alias holds, as the review
    group looks a decision's asset up. Raises what the client raises (unreachable store, missing index)."""
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        resp = client.search(index=read_alias(index_settings(settings)), query={"ids": {"values": chunk}},
                             size=len(chunk), source=False)
        found.update(h["_id"] for h in resp["hits"]["hits"])
    return found
