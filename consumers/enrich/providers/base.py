"""The one provider interface. Claude, Gemini and the offline local provider all implement it.

A provider turns one rendered prompt + one image into JSON matching the prompt's output schema. It raises
`streams.errors.TransientError` for 429/5xx/overloaded/timeouts (retry_after_s when the API says so) and
`streams.errors.PermanentError` for refusals and bad requests; invalid JSON is returned as-is in `raw_text`
with `data=None` so the caller can make one repair attempt.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from streams.errors import PermanentError


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The model's text as a JSON object, or None when it is not one (the caller keeps the raw text and may
    make its one repair attempt)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None



def connection(settings: Any, api_key: str | None, base_url: str | None, *, provider: str,
               vendor: str) -> tuple[str, str | None, float]:
    """API key, base URL and request timeout for a cloud adapter: explicit arguments over the settings'
    `enrich.<vendor>_api_key` / `enrich.<vendor>_base_url`; no key is a config error."""
    enrich = getattr(settings, "enrich", None)
    key = api_key
    secret = getattr(enrich, f"{vendor}_api_key", None) if enrich is not None else None
    if key is None and secret is not None:
        key = secret.get_secret_value()
    if not key:
        raise PermanentError(f"{provider} provider needs enrich.{vendor}_api_key", reason="config")
    url = base_url or (getattr(enrich, f"{vendor}_base_url") if enrich is not None else None)
    timeout_s = enrich.request_timeout_s if enrich is not None else 60.0
    return key, url, timeout_s

@dataclass
class ProviderRequest:
    task: str
    """'tagging' | 'alt_text' | 'rights' | 'verify'"""
    model: str
    system: str
    """Rendered instructions (trusted)."""
    user_text: str
    """Rendered user turn: untrusted data (OCR text, uploader notes, product context) clearly delimited."""
    output_schema: dict[str, Any]
    """JSON Schema the answer must satisfy."""
    image: bytes | None = None
    image_media_type: str = "image/jpeg"
    extra_images: list[tuple[str, bytes]] = field(default_factory=list)
    """(label, JPEG) sent after `image` in the same call: a video's other keyframes in time order, e.g.
    ("Keyframe at 3.0 s", ...); `image` is then the poster frame."""
    video: tuple[str, bytes] | None = None
    """(mime type, file) of a video sent as it is (Gemini, enrich.gemini_video), instead of `image` and
    `extra_images`; providers that take no video ignore it."""
    max_tokens: int = 1024
    temperature: float = 0.0
    timeout_s: float = 60.0
    context: dict[str, Any] = field(default_factory=dict)
    """Structured facts from preprocessing (OCR words, colours, faces, EXIF, vocabulary). The local provider
    works from these; cloud providers get them only through the rendered prompt."""


@dataclass
class ProviderResponse:
    data: dict[str, Any] | None
    """Parsed JSON output, or None if the model's text was not valid JSON."""
    raw_text: str
    model: str
    model_version: str | None = None
    request_id: str | None = None
    input_tokens: int = 0
    """input tokens billed at the full rate (prompt-cache reads and writes are counted apart)"""
    output_tokens: int = 0
    latency_ms: float = 0.0
    stop_reason: str | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    evidence: dict[str, str] | None = None
    """What backs each proposed field, when the provider knows it (the local provider: "tags.<tag>" -> e.g.
    'detector+classifier', "alt_text" -> what named the subject); kept beside the answer, not in it (the prompt
    schemas do not have it). validate calibrates per field and evidence source (issue 15 item 6)."""


def images_of(request: ProviderRequest) -> list[tuple[str | None, bytes, str]]:
    """(label or None, bytes, media type) of every image of a request, in the order a cloud model gets them: one
    unlabelled image, or for a video the poster frame and each keyframe, each after a text label."""
    if not request.extra_images:
        return [(None, request.image, request.image_media_type)] if request.image else []
    out: list[tuple[str | None, bytes, str]] = []
    if request.image:
        out.append(("Poster frame of the video:", request.image, request.image_media_type))
    out += [(f"{label}:", data, "image/jpeg") for label, data in request.extra_images]
    return out


@runtime_checkable
class Provider(Protocol):
    name: str
    """'claude' | 'gemini' | 'local'"""
    # A provider may also have `answer_revision: str`: the revision of the code that turns a model's output into
    # its answer, part of the result cache's key (consumers/enrich/results.py) so that a change there is not
    # answered from cache. The local provider has one; a cloud model's answers are the model's own.

    async def generate(self, request: ProviderRequest) -> ProviderResponse: ...

    async def aclose(self) -> None: ...
