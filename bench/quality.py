"""Metadata quality of the default offline setup on a labelled image set, next to a baseline from the same run.

    OPENBLAS_NUM_THREADS=1 python bench/quality.py                    # this tree vs the base commit (67e5f51)
    python bench/quality.py --baseline none --details                 # this tree only, one row per image
    python bench/quality.py --json out.json
    python bench/quality.py --baseline none --load 4                  # calm vs 4 CPU burners (issue 21)
    python bench/quality.py --baseline none --load 2 --loaded-ocr-timeout 0.001   # ... and OCR starved
    python bench/quality.py --baseline none --fit-calibration 2026-12-01.2       # refit validate's calibration
    python bench/quality.py --baseline none --compare-calibration old.json     # another calibration file, same run
    python bench/quality.py --baseline none --fit-calibration V --fit-keys 'alt:decorative,alt|pixels'  # only those

Each image of tests/data/quality/images (truth: tests/data/quality/truth.json, sources and licences in
make_set.py) goes through the real stages in-process, in a fixed shuffled order: PreprocessStage.preprocess_bytes
(real tesseract, BlazeFace/open_nsfw, hashes) -> EnrichStage.aprocess (local provider: EfficientNet-Lite0 + NanoDet-m +
MiniLM on onnxruntime; in-memory dedupe, so copies reuse an earlier enrichment as in production) -> ValidateStage.validate
(taxonomy, policy, auto-apply). Every asset declares a CC0 licence so rights never hold an asset back: the
auto-apply figures measure the model's confidence alone.

The baseline is the same script run in a subprocess against `git archive <ref>` of the base commit (its own
stages and models, same images, same machine, one after the other), so both columns come from one invocation.

Figures (issue 15 targets in brackets):
  tag P@5            share of the final top-5 tags an editor accepts (truth `tags` + `ok`)        [>= 0.75]
  tag recall         share of the required tags (`tags`) present among all final tags
  colour share       share of the top-5 tags that are colours                                      [<= 0.25]
  alt names subject  alt text contains one of the subject words (non-decorative images with a subject) [>= 75 %]
  photo as graphic   photos whose alt text/title says "graphic" or "pattern"                      [0]
  quotes not in image  alt texts/titles quoting words that are not in the image's text            [0]
  OCR word accuracy  truth words found in the OCR text (multiset), word-weighted; short = <= 8 words [0.93 / 0.85]
  faces              precision / recall of the face count against the truth                      [FP <= 2/100]
  dedupe             precision / recall of duplicate_of links (same family); variants merged       [0.98 / 0.94 / 0]
  decorative         decorative flag matches the truth
  auto-applied       share of assets auto-applied; share of their tags + alt text that are right   [>= 30 % / >= 95 %]
                     An asset counts as auto-applied when validate's status is auto_applied: every field it
                     publishes (alt text, visible text, published tags) is calibrated >= auto_apply_threshold.
                     Model tags held as suggestions (validate.tag_publish_min) are not applied and not counted.
  tag P@5/recall     over the published tags; "+ held suggestions" over published then held tags (what the
                     tagger proposed: the figure without holding)
  s/asset            wall and CPU seconds per asset for the three stages (models warm)             [CPU <= 2x]

Calibrated auto-apply (issue 15 item 6): the images are split by duplicate family into 'fit' and 'held-out'
(split_of). --fit-calibration fits validate's curves (consumers/validate/calibration.json) on the 'fit' part only;
every run then prints, per split, the auto-applied share and the share of the auto-applied assets' generated
fields (tags, alt text, visible text) an editor accepts, with the shipped calibration and with
validate.calibration=off (the uncalibrated threshold), re-validating the same enrichments. Read the held-out row.
With --fit-calibration (or --compare-calibration FILE) it also prints the calibration it replaces next to
the new one, per split, on the same enrichments: auto-apply and the tag figures (the first table's tags were
decided with the calibration loaded when the run started, i.e. the old one).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "quality"
BASE_REF = "67e5f51"


def _load_code(code: Path) -> None:
    sys.path.insert(0, str(code))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def _asset(name: str, path: Path) -> dict:
    return {"asset_id": name, "event_id": f"e-{name}", "event_type": "created", "source_uri": path.as_uri(),
            "content_type": None, "uploader": "bench", "uploader_notes": None, "declared_license": "CC0 1.0",
            "product_context": None, "tenant": "default", "event_time": 1763780000000, "version": 1,
            "human_fields": None, "attributes": {}}


def run_pipeline(names: list[str], *, per_image: bool = False, preprocess: dict | None = None,
                 data: Path = DATA) -> dict:
    """Runs preprocess -> enrich -> validate on every image of `data`/images; returns {name: {...outputs,
    timings}}. Each record is on its last attempt (the bench has no retry path): a part that times out or fails is
    marked degraded."""
    from app.settings import Settings
    from consumers.enrich.dedupe import InMemoryDedupeIndex
    from consumers.enrich.stage import EnrichStage
    from consumers.preprocess.stage import PreprocessStage
    from consumers.validate.stage import ValidateStage
    from streams.stage import RecordContext

    settings = Settings().with_overrides(enrich={"provider": "local", "dedupe": "memory"},
                                         preprocess={"file_roots": [str(data)], **(preprocess or {})})
    pre_stage = PreprocessStage(settings)
    enr_stage = EnrichStage(settings)
    val_stage = ValidateStage(settings)
    loop = asyncio.new_event_loop()

    def enrich(pre):
        ctx = RecordContext("preprocessed", 0, 0, pre["asset"]["asset_id"], {}, None,
                            attempt=settings.runner.retry_max_attempts)
        return loop.run_until_complete(enr_stage.aprocess(pre, ctx)).value

    # warm up: model loads, vocabulary embeddings, tesseract start-up; not timed, not remembered by dedupe
    warm = DATA / "images" / "document_report.png"
    enrich(pre_stage.preprocess_bytes(_asset("warm-up", warm), warm.read_bytes()))
    enr_stage.dedupe = InMemoryDedupeIndex(settings.enrich.dedupe_max_distance, settings.enrich.dedupe_lru_size,
                                           settings.enrich.dedupe_confirm_distance)
    if hasattr(enr_stage, "in_flight"):  # its recent answers too (a tree with InFlight: copies in flight together)
        from consumers.enrich.dedupe import clip_rule

        enr_stage.in_flight = type(enr_stage.in_flight)(settings.enrich.dedupe_max_distance,
                                                        settings.enrich.dedupe_confirm_distance, clip_rule(settings.enrich))
    out = {}
    enriched = {}
    before = os.times()
    for name in names:
        path = data / "images" / name
        t0, c0 = time.perf_counter(), time.process_time()
        pre = pre_stage.preprocess_bytes(_asset(name, path), path.read_bytes())
        t1 = time.perf_counter()
        enr = enrich(pre)
        t2 = time.perf_counter()
        val = val_stage.validate(enr)
        t3, c3 = time.perf_counter(), time.process_time()
        enriched[name] = enr
        # tesseract runs in a child process: its CPU time shows up in the children's times
        out[name] = {
            "ocr_text": (pre.get("ocr") or {}).get("text") or "",
            "faces": int((pre.get("signals") or {}).get("face_count") or 0),
            "duplicate_of": enr.get("duplicate_of"),
            "tags": [t["tag"] for t in val.get("tags") or []],
            "held_tags": [t["tag"] for t in val.get("tag_suggestions") or []],
            "model_tags": [t["tag"] for t in ((enr.get("enrichment") or {}).get("tags") or [])],
            "alt_text": val.get("alt_text") or "", "title": val.get("title") or "",
            "decorative": bool(val.get("decorative")), "status": val.get("status"),
            "confidence": float((enr.get("enrichment") or {}).get("confidence") or 0.0),
            "degraded": sorted({**(pre.get("degraded") or {}), **(enr.get("degraded") or {})}),
            "wall_s": t3 - t0, "cpu_s": c3 - c0, "pre_s": t1 - t0, "enrich_s": t2 - t1, "validate_s": t3 - t2,
        }
    after = os.times()
    child_cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    loop.run_until_complete(enr_stage.aclose())
    loop.close()
    # kept in memory only (not in --raw-json): bench calibration re-validates these with other settings
    return {"images": out, "child_cpu_s": child_cpu, "_enriched": enriched, "_settings": settings}


# --- scoring -------------------------------------------------------------------------------------------------

def model_facts(enriched: dict, classes: int = 5, boxes: int = 6) -> dict:
    """What the models saw on an enriched record's thumbnail, from the local provider's cached facts of the same
    run (`engine.analyse_image`; recomputed if the cache moved on): what named the alt text's subject, the
    classifier's top classes (label, p), the detector's boxes (label, score, share of the image) and the pixels'
    photo / graphic decision. For --details: why an alt text does or does not name its subject."""
    from consumers.enrich.providers.local import TOP_K, engine

    facts = engine.analyse_image(((enriched.get("pre") or {}).get("thumbnail") or {}).get("data"), TOP_K, 1)
    return {"subject_evidence": (enriched.get("enrichment") or {}).get("subject_evidence"),
            "classes": [(label, round(p, 3)) for label, _, p in facts.top[:classes]],
            "objects": [(d.label, round(d.score, 2), round(d.area, 2)) for d in facts.objects[:boxes]],
            "graphic": facts.graphic}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def _names_subject(alt: str, subjects: list[str]) -> bool:
    low = alt.lower()
    return any(re.search(r"\b" + re.escape(s.lower()) + r"(?:s|es)?\b", low) for s in subjects)


def _quotes_outside(texts: list[str], truth_text: str | None) -> bool:
    allowed = set(_words(truth_text or ""))
    for t in texts:
        for q in re.findall(r'"([^"]+)"', t or ""):
            if any(w not in allowed for w in _words(q.rstrip("…"))):
                return True
    return False


def score(run: dict, truth: dict) -> dict:
    imgs = run["images"]
    n = len(imgs)
    p5, rec_hit, rec_all, colour, top_total = 0, 0, 0, 0, 0
    alt_ok, alt_n, photo_graphic, bad_quotes, deco_ok = 0, 0, 0, 0, 0
    ocr_all = [0, 0]
    ocr_short = [0, 0]
    ftp = ffp = ffn = 0
    auto_n, auto_fields, auto_right = 0, 0, 0
    all_p5, all_total, all_hit = 0, 0, 0
    for name, r in imgs.items():
        t = truth[name]
        good = set(t["tags"]) | set(t["ok"])
        top = r["tags"][:5]
        # published + held suggestions: what an editor sees in review (the tagger's output before holding)
        every = r["tags"] + r.get("held_tags", [])
        all_total += len(every[:5])
        all_p5 += sum(1 for x in every[:5] if x in good)
        all_hit += sum(1 for x in t["tags"] if x in every)
        top_total += len(top)
        p5 += sum(1 for x in top if x in good)
        colour += sum(1 for x in top if x.startswith("color:"))
        rec_all += len(t["tags"])
        rec_hit += sum(1 for x in t["tags"] if x in r["tags"])
        if t["subject"] and not t["decorative"]:
            alt_n += 1
            alt_ok += _names_subject(r["alt_text"], t["subject"])
        if t["photo"] and re.search(r"\b(graphic|pattern)\b", f"{r['alt_text']} {r['title']}", re.I):
            photo_graphic += 1
        bad_quotes += _quotes_outside([r["alt_text"], r["title"]], t["text"])
        deco_ok += r["decorative"] == t["decorative"]
        if t["text"]:
            want = Counter(_words(t["text"]))
            got = Counter(_words(r["ocr_text"]))
            hit = sum((want & got).values())
            total = sum(want.values())
            ocr_all[0] += hit
            ocr_all[1] += total
            if total <= 8:
                ocr_short[0] += hit
                ocr_short[1] += total
        ftp += min(r["faces"], t["faces"])
        ffp += max(0, r["faces"] - t["faces"])
        ffn += max(0, t["faces"] - r["faces"])
        if r["status"] == "auto_applied":
            auto_n += 1
            auto_fields += len(top) + (1 if t["subject"] and not t["decorative"] else 0)
            auto_right += sum(1 for x in top if x in good)
            if t["subject"] and not t["decorative"]:
                auto_right += _names_subject(r["alt_text"], t["subject"])
    # dedupe: links vs families
    fam = {name: t["family"] for name, t in truth.items() if name in imgs}
    links = [(a, r["duplicate_of"]) for a, r in imgs.items() if r["duplicate_of"]]
    right = sum(1 for a, b in links if fam.get(a) and fam.get(a) == fam.get(b))
    fam_sizes = Counter(f for f in fam.values() if f)
    expected = sum(k - 1 for k in fam_sizes.values())
    wrong_links = [f"{a}->{b}" for a, b in links if not (fam.get(a) and fam.get(a) == fam.get(b))]
    walls = sorted(r["wall_s"] for r in imgs.values())
    cpu = sum(r["cpu_s"] for r in imgs.values()) + run.get("child_cpu_s", 0.0)

    def ratio(a, b):
        return a / b if b else float("nan")
    return {
        "images": n,
        "tag_p5": ratio(p5, top_total), "tag_recall": ratio(rec_hit, rec_all), "colour_share_top5": ratio(colour, top_total),
        "tag_p5_with_held": ratio(all_p5, all_total), "tag_recall_with_held": ratio(all_hit, rec_all),
        "held_tags": sum(len(r.get("held_tags", [])) for r in imgs.values()),
        "alt_names_subject": ratio(alt_ok, alt_n), "alt_names_subject_n": f"{alt_ok}/{alt_n}",
        "photo_called_graphic": photo_graphic, "quotes_not_in_image": bad_quotes,
        "ocr_word_acc": ratio(*ocr_all), "ocr_word_acc_short": ratio(*ocr_short),
        "face_precision": ratio(ftp, ftp + ffp), "face_recall": ratio(ftp, ftp + ffn), "face_fp": ffp, "face_fn": ffn,
        "dedupe_precision": ratio(right, len(links)), "dedupe_recall": ratio(right, expected),
        "dedupe_links": len(links), "variants_merged": len(wrong_links), "wrong_links": wrong_links,
        "decorative_acc": ratio(deco_ok, n),
        "auto_applied_share": ratio(auto_n, n), "auto_applied_precision": ratio(auto_right, auto_fields),
        "wall_s_per_asset": sum(walls) / n, "wall_s_p90": walls[int(0.9 * (n - 1))],
        "cpu_s_per_asset": cpu / n,
    }


# --- calibrated confidence (issue 15 item 6) --------------------------------------------------------------

def split_of(name: str, truth: dict) -> str:
    """'fit' or 'held-out', by a hash of the asset's duplicate family (copies never straddle the split)."""
    import zlib
    group = truth[name].get("family") or name
    return "fit" if zlib.crc32(group.encode()) % 2 == 0 else "held-out"


def _visible_ok(visible: str, truth_text: str | None) -> bool:
    """Quoted text is right when >= 90 % of its words are in the image's text (quoting a misread is the harm)."""
    got = Counter(_words(visible))
    if not truth_text or not got:
        return False
    return sum((got & Counter(_words(truth_text))).values()) >= 0.9 * sum(got.values())


def label_of(field: str, val: dict, t: dict) -> bool:
    """Would an editor accept this generated field? (the truth file's judgement, as the figures above use it)"""
    if field.startswith("tags."):
        return field[5:] in set(t["tags"]) | set(t["ok"])
    if field == "alt_text":
        if val.get("decorative") or not (val.get("alt_text") or "").strip():
            return bool(t["decorative"])
        return _names_subject(val["alt_text"], t["subject"]) if t["subject"] else not t["decorative"]
    if field == "visible_text":
        return _visible_ok(val.get("visible_text") or "", t["text"])
    raise ValueError(field)


def revalidate(run: dict, calibration) -> dict:
    """ValidateStage on the run's enriched records again with `calibration` ('off', 'bundled' or a path)."""
    from consumers.validate.stage import ValidateStage
    stage = ValidateStage(run["_settings"].with_overrides(validate={"calibration": calibration}))
    return {name: stage.validate(enr) for name, enr in run["_enriched"].items()}


def evidence_rows(run: dict, truth: dict) -> list[dict]:
    """Every generated field of every asset: split, model, evidence source, raw score, editor's label."""
    from consumers.validate.calibration import evidence_of, model_key, ocr_confidence
    rows = []
    for name, val in revalidate(run, "off").items():
        enr = run["_enriched"][name]
        key = model_key(enr.get("provenance"))
        ev = evidence_of(val, enrichment_confidence=float((enr.get("enrichment") or {}).get("confidence") or 0.0),
                         ocr_confidence=ocr_confidence(enr["pre"].get("ocr")),
                         subject_evidence=(enr.get("enrichment") or {}).get("subject_evidence"))
        for e in ev:
            rows.append({"name": name, "split": split_of(name, truth), "family": truth[name].get("family") or name,
                         "model": key, "field": e.field,
                         "source": e.source, "keys": list(e.keys), "raw": e.raw,
                         "ok": label_of(e.field, val, truth[name])})
    return rows


MIN_SAMPLES = 5
"""labelled fields a per-source (or origin family) curve needs on the fit split, each from another duplicate family
(copies of one image are one piece of evidence); fewer: the next curve along the field's keys (origin family, then
pooled). With the (k+0.5)/(n+1) smoothing a curve must see at least 3 straight accepted fields to reach 0.85 anyway;
5 keeps one or two lucky answers from getting a curve of their own. Counting families (session 19): the fit split's
five `alt|logo` fields are two logos (three copies of one, two of the other), and the Open Clip Art drawings' fit
split has a drawing the logo rule calls "A logo" that is no logo (bench/drawings.py), so five copies-counted logo
fields gave every logo-look alt text 0.92."""


def _isotonic(x, y) -> dict:
    """Isotonic regression, each fitted block's rate smoothed (k+0.5)/(n+1) and made monotone again."""
    import numpy as np
    from sklearn.isotonic import IsotonicRegression
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    block = iso.predict(x)
    # blocks = runs of equal fitted values: smooth each, then isotonic again on the smoothed block rates
    xs, ys, ws = [], [], []
    for v in sorted(set(block.round(12))):
        sel = np.isclose(block, v)
        k, n = float(y[sel].sum()), int(sel.sum())
        xs.append(float(x[sel].mean()))
        ys.append((k + 0.5) / (n + 1.0))
        ws.append(n + 1.0)
    smooth = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(xs, ys, sample_weight=ws)
    return {"x": [round(float(v), 4) for v in smooth.X_thresholds_],
            "y": [round(float(v), 4) for v in smooth.y_thresholds_], "n": len(x), "accepted": int(y.sum())}


def fit_calibration(rows: list[dict], version: str, min_samples: int = MIN_SAMPLES, keys: list[str] | None = None,
                    keep: dict | None = None) -> dict:
    """Isotonic regression per (model, pooled evidence source) on the fit part, and per (model, evidence source
    with its origin: 'tag:class|detector+classifier') where the fit part has fields of it from >= min_samples
    duplicate families; a per-source key with fewer is listed with "fallback": its next key. Each fitted block's rate is smoothed towards 1/2 by
    half a success and half a failure ((k+0.5)/(n+1), Jeffreys) and made monotone again, so a block of three right
    answers reads 0.88, not 1.00: a small labelled set cannot promise certainty.

    `keys` refits only those keys ('alt:decorative', 'alt|pixels'): every other key is kept as it is in `keep`
    (the calibration file being replaced), and the file says which were refitted."""
    import copy

    import numpy as np

    from consumers.validate.calibration import is_pooled
    fit = [r for r in rows if r["split"] == "fit" and r["model"]]
    models: dict = {}

    def xy(part):
        return (np.array([r["raw"] for r in part], dtype=float), np.array([float(r["ok"]) for r in part]))

    for model, pooled in sorted({(r["model"], r["keys"][-1]) for r in fit if is_pooled(r["keys"][-1])}):
        models.setdefault(model, {})[pooled] = _isotonic(*xy([r for r in fit if (r["model"], r["keys"][-1])
                                                              == (model, pooled)]))
    # a drawing's recognised origin ('alt|graphic:box') has no pooled key: each of its keys needs min_samples too
    for model, key in sorted({(r["model"], k) for r in fit for k in r["keys"] if not is_pooled(k)}):
        part = [r for r in fit if r["model"] == model and key in r["keys"]]
        families = len({r.get("family") or r["name"] for r in part})
        if families >= min_samples:
            models.setdefault(model, {})[key] = {**_isotonic(*xy(part)), "families": families}
        else:
            nxt = sorted({r["keys"][r["keys"].index(key) + 1] if r["keys"][-1] != key else "none (review)"
                          for r in part})
            models.setdefault(model, {})[key] = {"fallback": " | ".join(nxt), "n": len(part), "families": families,
                                                 "accepted": int(sum(r["ok"] for r in part))}
    if keys:
        fitted, models = models, copy.deepcopy((keep or {}).get("models", {}))
        for model, by_src in fitted.items():
            models.setdefault(model, {}).update({k: c for k, c in by_src.items() if k in keys})
    return {"version": version, "fitted_on": "tests/data/quality, split 'fit' (bench/quality.py split_of); "
            "the 'held-out' split is never used to fit", "method": "isotonic regression per evidence source, "
            "blocks smoothed (k+0.5)/(n+1); per evidence origin ('<group>|<origin>', then its family '<group>|box') "
            "where the fit split has fields of it from >= min_samples duplicate families (copies of one image count "
            "once), else the next key (entries with \"fallback\")",
            "min_samples": min_samples, **({"refitted": f"{', '.join(keys)} only (every other key as in "
                                             f"{(keep or {}).get('version')})"} if keys else {}),
            "models": models}


def auto_apply_figures(run: dict, truth: dict, calibration, split: str | None) -> dict:
    """Auto-applied share and the share of their generated fields an editor accepts (tags, alt text, visible
    text; each counted once), over one split or all."""
    vals = revalidate(run, calibration)
    from consumers.validate.calibration import evidence_of, ocr_confidence
    names = [n for n in vals if split is None or split_of(n, truth) == split]
    auto = [n for n in names if vals[n]["status"] == "auto_applied"]
    fields = right = 0
    for n in auto:
        enr = run["_enriched"][n]
        for e in evidence_of(vals[n], enrichment_confidence=float(enr["enrichment"].get("confidence") or 0.0),
                             ocr_confidence=ocr_confidence(enr["pre"].get("ocr")),
                             subject_evidence=enr["enrichment"].get("subject_evidence")):
            fields += 1
            right += label_of(e.field, vals[n], truth[n])
    return {"assets": len(names), "auto": len(auto), "share": len(auto) / len(names) if names else float("nan"),
            "fields": fields, "precision": right / fields if fields else float("nan"), "names": auto}


def calibration_table(run: dict, truth: dict) -> str:
    from consumers.validate.calibration import Calibration
    version = Calibration.load().version
    lines = [f"auto-apply, calibrated (calibration {version}, fitted on the 'fit' split) vs uncalibrated "
             "(validate.calibration=off), same enrichments:",
             "| split | assets | auto-applied (calibrated) | fields right (calibrated) | auto-applied (uncalibrated) "
             "| fields right (uncalibrated) |", "|---|---|---|---|---|---|"]
    for split in ("held-out", "fit", None):
        cal = auto_apply_figures(run, truth, "bundled", split)
        raw = auto_apply_figures(run, truth, "off", split)
        lines.append(f"| {split or 'all'} | {cal['assets']} | {cal['share']:.2f} ({cal['auto']}) | "
                     f"{_fmt(cal['precision'])} ({cal['fields']} fields) | {raw['share']:.2f} ({raw['auto']}) | "
                     f"{_fmt(raw['precision'])} ({raw['fields']} fields) |")
    held = auto_apply_figures(run, truth, "bundled", "held-out")
    lines.append("held-out assets auto-applied: " + (", ".join(sorted(held["names"])) or "none"))
    return "\n".join(lines)


def held_by(run: dict, calibration="bundled") -> dict[str, list[str]]:
    """For --details: per asset validate does not auto-apply, what held it: each review (or rejection) reason, then
    each judged field under the auto-apply threshold with its calibrated confidence, the curve it was read through
    (how many fit-split fields that curve was fitted on, how many an editor accepted), its raw score, and the more
    specific keys it fell back from."""
    import json as _json

    from consumers.validate.calibration import CALIBRATION_FILE, evidence_of, ocr_confidence
    from consumers.validate.stage import ValidateStage
    from domain.confidence import FIELDS_BELOW, TAGS_BELOW, not_judged
    stage = ValidateStage(run["_settings"].with_overrides(validate={"calibration": calibration}))
    path = CALIBRATION_FILE if calibration == "bundled" else Path(calibration)
    fitted = {}
    if calibration != "off":
        fitted = {k: c for by_src in _json.loads(path.read_text())["models"].values() for k, c in by_src.items()}
    cfg = stage.cfg
    out = {}
    for name, enr in run["_enriched"].items():
        val, reasons = stage.decide(enr)
        if val["status"] == "auto_applied":
            continue
        # the lists of fields / tags under the threshold are said only once the asset goes to review: not causes
        lines = [f"{val['status']} " + ("also: " if r.startswith((FIELDS_BELOW, TAGS_BELOW)) else "because: ") + r
                 for r in reasons]
        ev = {e.field: e for e in evidence_of(val, enrichment_confidence=float(
            (enr.get("enrichment") or {}).get("confidence") or 0.0), ocr_confidence=ocr_confidence(
            enr["pre"].get("ocr")), subject_evidence=(enr.get("enrichment") or {}).get("subject_evidence"))}
        skip = not_judged(val, cfg.auto_apply_threshold, cfg.tag_publish_min)
        for field, conf in sorted((val.get("field_confidence") or {}).items(), key=lambda kv: kv[1]):
            if field in skip or conf >= cfg.auto_apply_threshold:
                continue
            key = (val.get("field_evidence") or {}).get(field)
            c = fitted.get(key) or {}
            e = ev.get(field)
            before = [] if e is None or key not in e.keys else list(e.keys[:e.keys.index(key)])
            why_not = "; ".join(f"{k}: {fitted[k]['n']} fields, {fitted[k]['accepted']} accepted -> {fitted[k]['fallback']}"
                                if k in fitted else f"{k}: not in the calibration" for k in before)
            lines.append(f"field {field} {conf:.4f} < {cfg.auto_apply_threshold:.2f} via {key} (fitted on "
                         f"{c.get('n', '?')} fields, {c.get('accepted', '?')} accepted)"
                         + (f", raw {e.raw:.3f}" if e else "") + (f"; fell back from {why_not}" if why_not else ""))
        out[name] = lines
    return out


def _revalidated(run: dict, calibration) -> dict:
    """The run's images with status and published / held tags as validate gives them under `calibration`."""
    vals = revalidate(run, calibration)
    return {"images": {n: {**r, "status": vals[n]["status"], "tags": [t["tag"] for t in vals[n].get("tags") or []],
                           "held_tags": [t["tag"] for t in vals[n].get("tag_suggestions") or []]}
                       for n, r in run["images"].items()}}


def calibration_compare(run: dict, truth: dict, before: str, after: str = "bundled") -> str:
    """Two calibrations on the same enrichments, per split: auto-apply and the tag figures (which tags are
    published or held as suggestions depends on the calibration)."""
    from consumers.validate.calibration import Calibration
    names = {c: Calibration.load(None if c == "bundled" else c).version for c in (before, after)}
    lines = [f"calibration {names[before]} (before) vs {names[after]} (after), same enrichments:",
             "| split | calibration | auto-applied | fields right | tag P@5 | tag recall | P@5 with held | "
             "recall with held | colour share |", "|---|---|---|---|---|---|---|---|---|"]
    for split in ("held-out", "fit", None):
        if not any(split is None or split_of(n, truth) == split for n in run["images"]):
            continue  # (--order with images of one split)
        for cal in (before, after):
            a = auto_apply_figures(run, truth, cal, split)
            imgs = _revalidated(run, cal)["images"]
            c = score({"images": {n: v for n, v in imgs.items() if split is None or split_of(n, truth) == split}},
                      truth)
            lines.append(f"| {split or 'all'} | {names[cal]} | {a['share']:.2f} ({a['auto']}/{a['assets']}) | "
                         f"{_fmt(a['precision'])} ({a['fields']}) | {_fmt(c['tag_p5'])} | {_fmt(c['tag_recall'])} | "
                         f"{_fmt(c['tag_p5_with_held'])} | {_fmt(c['tag_recall_with_held'])} | "
                         f"{_fmt(c['colour_share_top5'])} |")
    for cal in (before, after):
        held = auto_apply_figures(run, truth, cal, "held-out")["names"]
        lines.append(f"held-out auto-applied with {names[cal]}: " + (", ".join(sorted(held)) or "none"))
    return "\n".join(lines)


def split_tag_table(run: dict, base_run: dict | None, truth: dict) -> str:
    """Tag figures per split (read held-out: the calibration that decides which tags are held never saw it)."""
    lines = ["tags per split (published / published + held suggestions" + ("; baseline" if base_run else "") + "):",
             "| split | P@5 | recall | P@5 with held | recall with held | colour share |"
             + (" baseline P@5 | baseline recall |" if base_run else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if base_run else "")]
    for split in ("held-out", "fit"):
        if not any(split_of(n, truth) == split for n in run["images"]):
            continue
        def part(r, split=split):
            return score({"images": {n: v for n, v in r["images"].items() if split_of(n, truth) == split}}, truth)
        c = part(run)
        row = (f"| {split} | {_fmt(c['tag_p5'])} | {_fmt(c['tag_recall'])} | {_fmt(c['tag_p5_with_held'])} | "
               f"{_fmt(c['tag_recall_with_held'])} | {_fmt(c['colour_share_top5'])} |")
        if base_run:
            b = part(base_run)
            row += f" {_fmt(b['tag_p5'])} | {_fmt(b['tag_recall'])} |"
        lines.append(row)
    return "\n".join(lines)


ROWS = [
    ("tag precision@5 (published tags)", "tag_p5", ">= 0.75"), ("tag recall (published tags)", "tag_recall", ""),
    ("tag precision@5 (published + held suggestions)", "tag_p5_with_held", ""),
    ("tag recall (published + held suggestions)", "tag_recall_with_held", ""),
    ("model tags held as suggestions", "held_tags", ""),
    ("colour share of top 5", "colour_share_top5", "<= 0.25"),
    ("alt text names the subject", "alt_names_subject", ">= 0.75"), ("  (count)", "alt_names_subject_n", ""),
    ("photos called graphic/pattern", "photo_called_graphic", "0"),
    ("alt/title quoting text not in image", "quotes_not_in_image", "0"),
    ("OCR word accuracy (all)", "ocr_word_acc", ">= 0.93"), ("OCR word accuracy (<= 8 words)", "ocr_word_acc_short", ">= 0.85"),
    ("face precision", "face_precision", ""), ("face recall", "face_recall", ""),
    ("face false positives / misses", "face_fp_fn", "<= 2 per 100"),
    ("dedupe precision", "dedupe_precision", ">= 0.98"), ("dedupe recall", "dedupe_recall", ">= 0.94"),
    ("distinct images merged (variants, flat fields)", "variants_merged", "0"), ("decorative accuracy", "decorative_acc", ""),
    ("auto-applied share", "auto_applied_share", ">= 0.30"), ("auto-applied fields correct", "auto_applied_precision", ">= 0.95"),
    ("wall s / asset (mean)", "wall_s_per_asset", ""), ("wall s / asset (p90)", "wall_s_p90", ""),
    ("CPU s / asset (incl. tesseract)", "cpu_s_per_asset", "<= 2x baseline"),
]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(cur: dict, base: dict | None) -> str:
    for s in (cur, base):
        if s is not None:
            s["face_fp_fn"] = f"{s['face_fp']} / {s['face_fn']}"
    head = f"| measure ({cur['images']} images) | this tree |" + (" baseline |" if base else "") + " target |"
    lines = [head, "|---|---|" + ("---|" if base else "") + "---|"]
    for label, key, target in ROWS:
        row = f"| {label} | {_fmt(cur[key])} |" + (f" {_fmt(base[key])} |" if base else "") + f" {target} |"
        lines.append(row)
    if base and base["cpu_s_per_asset"]:
        lines.append(f"| CPU ratio this/baseline | {cur['cpu_s_per_asset'] / base['cpu_s_per_asset']:.2f}x |"
                     + (" 1.00x |" if base else "") + " <= 2x |")
    return "\n".join(lines)


def model_times_table(names: list[str]) -> str:
    """Per-image CPU of one forward pass of each local model, on the full images, in this process (1 intra-op
    thread, best of 3): the object detector next to the classifier that ran alone before it."""
    from consumers.enrich.providers.local import engine
    from domain.vision.classifier import decode_image

    clf, det = engine.classifier(1), engine.detector(1)
    c_ms, d_ms = [], []
    for name in names:
        arr = decode_image((DATA / "images" / name).read_bytes())
        for model, out in ((lambda a: clf.predict(a), c_ms), (lambda a: det.detect(a), d_ms)):
            model(arr)
            best = float("inf")
            for _ in range(3):
                c0 = time.process_time()
                model(arr)
                best = min(best, time.process_time() - c0)
            out.append(best * 1000.0)
    c, d = sum(c_ms) / len(c_ms), sum(d_ms) / len(d_ms)
    return ("CPU per forward pass (ms, mean over the images, resize included, decode not; best of 3):\n"
            "| classifier (EfficientNet-Lite0 224) | detector (NanoDet-m 416) | detector / classifier |\n"
            f"|---|---|---|\n| {c:.1f} | {d:.1f} | {d / c:.2f}x |")


def _burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _under_load(n: int, names: list[str], preprocess: dict | None = None) -> dict:
    import multiprocessing as mp

    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(n)]
    for b in burners:
        b.start()
    try:
        return run_pipeline(names, preprocess=preprocess)
    finally:
        stop.set()
        for b in burners:
            b.join(5)


def _baseline(ref: str, names: list[str], script: Path | None = None) -> dict:
    """Runs this script (or `script`, which takes the same --code/--raw-json/--order arguments) against the code of
    `ref` (git archive into a temp dir) in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="quality-base-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        tar = Path(tmp) / "base.tar"
        tar.write_bytes(archive)
        with tarfile.open(tar) as tf:
            tf.extractall(Path(tmp) / "code", filter="data")
        out = Path(tmp) / "base.json"
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "code")}
        subprocess.run([sys.executable, str(script or Path(__file__).resolve()), "--code", str(Path(tmp) / "code"),
                        "--baseline", "none", "--raw-json", str(out), "--order", ",".join(names)],
                       check=True, env=env, cwd=tmp)
        return json.loads(out.read_text())


def arguments(doc: str, base_ref: str) -> argparse.ArgumentParser:
    """The options every bench with a same-run baseline takes (the baseline child gets --code, --raw-json and
    --order from `_baseline`)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=base_ref, help="git ref to compare with, or 'none'")
    ap.add_argument("--code", default=str(ROOT), help=argparse.SUPPRESS)
    ap.add_argument("--raw-json", help=argparse.SUPPRESS)
    ap.add_argument("--order", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=7, help="shuffle of the processing order")
    ap.add_argument("--details", action="store_true", help="one row per image")
    return ap


def main() -> None:
    ap = arguments(__doc__, BASE_REF)
    ap.add_argument("--json", help="write both runs' scores here")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="run this tree a second time with N CPU-burning processes beside it (issue 21: the same "
                         "images must get the same metadata on a busy machine) and add that column")
    ap.add_argument("--loaded-ocr-timeout", type=float, default=None, metavar="S",
                    help="with --load: tesseract's time limit in the loaded run (e.g. 0.001: a worker starved "
                         "of CPU); the difference must be entirely in assets marked degraded")
    ap.add_argument("--fit-calibration", metavar="VERSION",
                    help="fit the confidence calibration on the 'fit' split and write it to "
                         "consumers/validate/calibration.json with this version (needs scikit-learn)")
    ap.add_argument("--fit-keys", metavar="KEYS",
                    help="with --fit-calibration: refit only these evidence keys (comma-separated, e.g. "
                         "'alt:decorative,alt|pixels'); every other key is kept from the file it replaces")
    ap.add_argument("--compare-calibration", metavar="FILE",
                    help="also print auto-apply and tag figures per split with this calibration file next to the "
                         "shipped one, on the same enrichments (with --fit-calibration: the file it replaces)")
    args = ap.parse_args()
    truth = json.loads((DATA / "truth.json").read_text())["images"]
    if args.order:
        names = args.order.split(",")
    else:
        names = sorted(truth)
        random.Random(args.seed).shuffle(names)
    if args.raw_json:  # baseline child
        _load_code(Path(args.code))
        run = run_pipeline(names)
        Path(args.raw_json).write_text(json.dumps({k: v for k, v in run.items() if not k.startswith("_")}))
        return
    base_run = None
    if args.baseline != "none":
        try:
            base_run = _baseline(args.baseline, names)
        except subprocess.CalledProcessError as exc:  # a shallow clone without the base commit, say
            print(f"baseline {args.baseline} could not be run ({exc.cmd[:2]}...: exit {exc.returncode}); "
                  "figures of this tree only", file=sys.stderr)
    _load_code(Path(args.code))
    cur_run = run_pipeline(names)
    if args.fit_calibration:
        from consumers.validate.calibration import CALIBRATION_FILE
        cal = fit_calibration(evidence_rows(cur_run, truth), args.fit_calibration,
                              keys=args.fit_keys.split(",") if args.fit_keys else None,
                              keep=json.loads(CALIBRATION_FILE.read_text()))
        previous = Path(tempfile.mkdtemp()) / "calibration-before.json"  # compared below, same enrichments
        previous.write_text(CALIBRATION_FILE.read_text())
        args.compare_calibration = args.compare_calibration or str(previous)
        CALIBRATION_FILE.write_text(json.dumps(cal, indent=1) + "\n")
        print(f"calibration {args.fit_calibration} written to {CALIBRATION_FILE}")
    cur = score(cur_run, truth)
    base = score(base_run, truth) if base_run else None
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (shared machine: timings are noisy)")
    print(table(cur, base))
    if (Path(args.code) / "consumers" / "validate" / "calibration.py").exists():
        print()
        print(calibration_table(cur_run, truth))
        if args.compare_calibration:
            print()
            print(calibration_compare(cur_run, truth, args.compare_calibration))
        print()
        print(split_tag_table(cur_run, base_run, truth))
    if (Path(args.code) / "domain" / "vision" / "detector.py").exists():
        print()
        print(model_times_table(sorted(names)))
    if args.load:
        over = {"ocr_timeout_s": args.loaded_ocr_timeout} if args.loaded_ocr_timeout else None
        loaded_run = _under_load(args.load, names, over)
        loaded = score(loaded_run, truth)
        changed = [n for n in names if {k: v for k, v in loaded_run["images"][n].items() if not k.endswith("_s")}
                   != {k: v for k, v in cur_run["images"][n].items() if not k.endswith("_s")}]
        marked = [n for n in changed if loaded_run["images"][n].get("degraded")]
        silent = [n for n in changed if n not in marked]
        print(f"\nthe same images with {args.load} CPU burners beside this process"
              + (f", tesseract limit {args.loaded_ocr_timeout} s" if over else "") + ":")
        print(table(loaded, cur).replace("| baseline |", "| calm run |").replace("| this tree |", "| loaded |"))
        print(f"assets whose metadata differs from the calm run: {len(changed)}, of them marked degraded (sent "
              f"to review): {len(marked)}, silently different: {len(silent)}" + (f" ({', '.join(silent)})"
                                                                                   if silent else ""))
    if cur["wrong_links"]:
        print("wrong dedupe links (this tree):", ", ".join(cur["wrong_links"]))
    if base and base["wrong_links"]:
        print("wrong dedupe links (baseline):", ", ".join(base["wrong_links"]))
    if args.details:
        held = held_by(cur_run) if (Path(args.code) / "consumers" / "validate" / "calibration.py").exists() else {}
        for name in names:
            r = cur_run["images"][name]
            t = truth[name]
            seen = model_facts(cur_run["_enriched"][name])
            named = "" if not t["subject"] or t["decorative"] else (
                " names the subject" if _names_subject(r["alt_text"], t["subject"]) else " MISSES the subject")
            print(f"\n{name} ({split_of(name, truth)}): [{r['status']} {r['confidence']:.2f}] faces {r['faces']}/{t['faces']}"
                  f" dup={r['duplicate_of']}\n  alt{named} ({seen['subject_evidence']}): {r['alt_text']!r}\n"
                  f"  title: {r['title']!r}\n  tags: {r['tags'][:8]}\n  ocr: {r['ocr_text'][:120]!r}\n"
                  f"  classes: {seen['classes']} boxes: {seen['objects']} graphic: {seen['graphic']}")
            for line in held.get(name, []):
                print(f"  held: {line}")
            if base_run:
                b = base_run["images"][name]
                print(f"  BASE alt: {b['alt_text']!r} tags: {b['tags'][:5]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"current": cur, "baseline": base}, indent=1))


if __name__ == "__main__":
    main()
