"""The controlled vocabulary: bundled versions, synonyms, parents, deprecations, deny-list."""
from __future__ import annotations

import json

import pytest

from domain.taxonomy import available_versions, load_taxonomy


@pytest.fixture(scope="module")
def v1():
    return load_taxonomy(version="v1")


@pytest.fixture(scope="module")
def v2():
    return load_taxonomy(version="v2")


def test_default_is_the_latest_bundled_version(v2):
    assert available_versions() == ["v1", "v2"]
    assert load_taxonomy().version == "v2"
    assert load_taxonomy() is v2


def test_vocabulary_is_broad_and_well_formed(v2):
    vocab = v2.vocabulary()
    assert 120 <= len(vocab) <= 200
    facets = {t["facet"] for t in vocab}
    assert {"subject", "product", "color", "activity", "setting", "content", "style", "mood"} <= facets
    tags = {t["tag"] for t in vocab}
    for needed in ("subject:person", "subject:dog", "product:sneaker", "product:laptop", "color:beige",
                   "activity:cooking", "setting:studio", "content:screenshot"):
        assert needed in tags
    for t in vocab:
        assert t["tag"] == f"{t['facet']}:{t['tag'].split(':', 1)[1]}"
        assert t["label"] and isinstance(t["synonyms"], list)
        assert not v2.is_denied(t["tag"]), t  # nothing in the allow-list is denied
        assert t["tag"] not in v2.deprecated   # deprecated tags are not offered


@pytest.mark.parametrize("raw, expected, how", [
    ("product:sneaker", "product:sneaker", "exact"),
    ("Running Shoe", "product:sneaker", "synonym"),
    ("golden_retriever", "subject:dog", "synonym"),
    ("  COLOR :  Crimson ", "color:red", "synonym"),
    ("  COLOR :  Grey ", "color:gray", "deprecated"),   # color:grey was the v1 spelling
    ("tabby cat", "subject:cat", "synonym"),
    ("Dogs", "subject:dog", "plural"),
    ("object:laptop", "product:laptop", "exact"),   # unknown facet prefix: value looked up across facets
])
def test_synonyms_and_normalisation(v2, raw, expected, how):
    mapped = v2.map(raw)
    assert mapped is not None and mapped.tag == expected and mapped.matched == how


def test_child_implies_parents(v2):
    mapped = v2.map("sneakers")
    assert mapped.tag == "product:sneaker"
    assert mapped.parents == ("product:shoe", "product:footwear")
    assert v2.map("subject:dog").parents == ("subject:animal",)


def test_v2_renames_v1_tags_and_remaps_old_records(v1, v2):
    # v1 spelled these differently; v2 maps the old spelling to the replacement
    assert "subject:automobile" in v1.tags() and "subject:automobile" not in v2.tags()
    mapped = v2.map("subject:automobile")
    assert (mapped.tag, mapped.matched, mapped.replaced) == ("subject:car", "deprecated", "subject:automobile")
    old_record_tags = ["subject:automobile", "product:sneakers", "color:grey", "style:hdr", "color:red"]
    assert v2.remap(old_record_tags) == ["subject:car", "product:sneaker", "color:gray", "color:red"]
    # CanonicalTag dicts keep score and source, get the new tag/facet/label
    remapped = v2.remap([{"tag": "content:graph", "facet": "content", "label": "graph", "score": 0.8,
                          "source": "model"}])
    assert remapped == [{"tag": "content:chart", "facet": "content", "label": "chart", "score": 0.8,
                         "source": "model"}]


def test_every_v1_tag_has_a_home_in_v2(v1, v2):
    for tag in v1.tags():
        outcome = v2.resolve(tag).outcome
        assert outcome in ("mapped", "removed"), tag
    removed = [t for t in v1.tags() if v2.resolve(t).outcome == "removed"]
    assert sorted(removed) == ["product:toy-product", "style:hdr"]


@pytest.mark.parametrize("raw", ["asian", "Religion:Christian", "ethnicity:hispanic", "health:diabetic",
                                 "sexual orientation", "30 years old", "looks tired", "ugly", "Muslim"])
def test_denied_tags_never_map(v2, raw):
    res = v2.resolve(raw)
    assert res.outcome == "denied" and res.mapped is None and res.reason
    assert v2.map(raw) is None


def test_unknown_and_removed(v2):
    assert v2.resolve("unicorn").outcome == "unknown"
    assert v2.resolve("style:hdr").outcome == "removed"
    assert v2.map("style:hdr") is None


def test_load_from_path_and_broken_files(tmp_path, v2):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"version": "v9", "facets": {"subject": "x"},
                                "tags": [{"tag": "subject:robot", "synonyms": ["android"]}]}))
    tax = load_taxonomy(str(good))
    assert tax.version == "v9" and tax.map("android").tag == "subject:robot"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "v9", "facets": {"subject": "x"},
                               "tags": [{"tag": "subject:robot", "parent": "subject:machine"}]}))
    with pytest.raises(ValueError, match="unknown parent"):
        load_taxonomy(str(bad))
    with pytest.raises(FileNotFoundError):
        load_taxonomy(version="v99")


def _vocabulary(tmp_path, deprecated, tags=("subject:car", "subject:automobile")):
    path = tmp_path / "renames.json"
    path.write_text(json.dumps({"version": "v9", "facets": {"subject": "x"},
                                "tags": [{"tag": t, "label": t.split(":")[1] + " label"} for t in tags],
                                "deprecated": deprecated}))
    return str(path)


def test_renamed_names_group_together_in_the_bundled_vocabulary(v2):
    assert v2.same_tags("color:grey") == ("color:grey", "color:gray")
    assert v2.same_tags("color:gray") == ("color:gray", "color:grey")
    assert v2.same_tags("style:hdr") == ("style:hdr",)          # removed: only its own name
    assert v2.same_tags("subject:dog") == ("subject:dog",)
    assert (v2.current_name("color:grey"), v2.current_name("style:hdr"), v2.current_name("color:red")) == \
        ("color:gray", None, "color:red")


@pytest.mark.parametrize("deprecated", [
    {"subject:motorcar": "subject:auto", "subject:auto": "subject:motorcar"},        # no way out
    {"subject:motorcar": "subject:automobile", "subject:automobile": "subject:motorcar"},  # through a listed tag
])
def test_a_rename_cycle_is_refused_when_the_vocabulary_loads(tmp_path, deprecated):
    """An editor who renames a -> b and b -> a gets a clear error naming the cycle when the file loads, not a
    hang or an error later on the first record that carries one of the names."""
    with pytest.raises(ValueError, match="deprecation cycle subject:motorcar -> subject:"):
        load_taxonomy(_vocabulary(tmp_path, deprecated))


def test_an_id_both_deprecated_and_listed_follows_its_rename_everywhere(tmp_path):
    """subject:automobile is still in the tags list but was renamed to subject:car (and subject:motorcar to it):
    mapping, the current name and the filter's names all agree that every one of them is now subject:car."""
    tax = load_taxonomy(_vocabulary(tmp_path, {"subject:motorcar": "subject:automobile",
                                               "subject:automobile": "subject:car"}))
    for raw in ("subject:automobile", "automobile label", "subject:motorcar", "motorcar"):
        mapped = tax.map(raw)
        assert (mapped.tag, mapped.matched) == ("subject:car", "deprecated"), raw
    names = ("subject:automobile", "subject:car", "subject:motorcar")
    for name in names:
        assert tax.current_name(name) == "subject:car"
        assert tax.same_tags(name) == (name, *sorted(set(names) - {name}))
    # the review app: an editor's tag ids land on the current name, and an old name's chip says which it is
    from app.review.decisions import canonical_tags, tag_chips

    assert canonical_tags('["subject:automobile", "subject:motorcar"]', tax) == ["subject:car"]
    assert [c["replacement"] for c in tag_chips({"tags": ["subject:motorcar", "subject:car"]}, tax)] == \
        ["subject:car", None]
    # neither the prompts' vocabulary nor the autocomplete offers the listed-but-renamed id, and the autocomplete
    # names the current tag for each old one (not the next rename)
    from app.review.decisions import vocabulary

    offered = {e["tag"] for e in tax.vocabulary()}
    assert "subject:car" in offered and "subject:automobile" not in offered
    assert not tax.allowed("subject:automobile")
    assert vocabulary(tax)["deprecated"] == {"subject:motorcar": "subject:car", "subject:automobile": "subject:car"}
