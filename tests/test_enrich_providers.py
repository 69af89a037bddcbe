"""Claude and Gemini adapters against recorded responses in each API's wire format, served over loopback HTTP
to the real SDKs (anthropic.AsyncAnthropic, google.genai.Client)."""
from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from consumers.enrich.calling import Caller, ModelSpec, PriceTable, SpendLedger
from consumers.enrich.prompts import load_prompt, render
from consumers.enrich.providers.claude import ClaudeProvider
from consumers.enrich.providers.gemini import GeminiProvider
from consumers.enrich.replay import ReplayServer, gemini_route, load_recording
from streams.errors import PermanentError, TransientError
from app.settings import Settings

REC = Path(__file__).parent / "recordings"
KEY = "sk-ant-test-SECRET-0123456789"
GKEY = "AIza-test-SECRET-0123456789"
VOCAB = [{"tag": t, "facet": t.split(":")[0], "label": t.split(":")[1], "synonyms": []}
         for t in ("product:sneaker", "product:footwear", "color:red", "setting:studio", "content:photo")]
PRE = {"asset": {"asset_id": "a1", "product_context": {"sku": "RF-2", "category": "footwear"}},
       "ocr": {"text": "RUNFAST 2"}}
JPEG = base64.b64decode("/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q==")


def rec(name: str, **over) -> dict:
    return {**load_recording(REC / name), **over}


def settings(**enrich) -> Settings:
    base = {"provider": "claude", "max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 2.0,
            "request_timeout_s": 5.0, "dedupe": "off"}
    return Settings().with_overrides(enrich={**base, **enrich})


def prompt(task: str, provider: str = "claude", model: str = "claude-haiku-4-5"):
    return render(load_prompt(task), PRE, vocabulary=VOCAB, taxonomy_version="test", provider=provider,
                  model=model, max_tokens=300)


def caller(s: Settings, provider) -> Caller:
    return Caller(s.enrich, {provider.name: provider}, ledger=SpendLedger(s.enrich.budget_usd),
                  prices=PriceTable(s.enrich))


@pytest.fixture
def claude_server():
    with ReplayServer() as srv:
        yield srv


@pytest.fixture
def gemini_server():
    with ReplayServer(route=gemini_route) as srv:
        yield srv


def run(coro):
    return asyncio.run(coro)


def call(p, spec: ModelSpec, pr, s: Settings, *, image: bytes | None = None, sleeps: list | None = None,
         c: Caller | None = None, extra_images: list[tuple[str, bytes]] | None = None):
    """One Caller.run through a real provider against the recording server, then the provider closed."""
    c = c or caller(s, p)
    if sleeps is not None:
        async def fake(d):
            sleeps.append(d)
        c._sleep = fake

    async def go():
        try:
            return await c.run(spec, pr, image=image, media_type="image/jpeg", context={}, extra_images=extra_images)
        finally:
            await p.aclose()
    return run(go())


# --- Claude -----------------------------------------------------------------------------------------------

def claude(server) -> ClaudeProvider:
    return ClaudeProvider(api_key=KEY, base_url=server.url)


def ccall(server, task: str = "tagging", model: str = "claude-haiku-4-5", s: Settings | None = None,
          image: bytes | None = None, sleeps: list | None = None, p: ClaudeProvider | None = None,
          c: Caller | None = None):
    pr = prompt(task, model=model)
    return pr, call(p or claude(server), ModelSpec("claude", model), pr, s or settings(), image=image,
                    sleeps=sleeps, c=c)


def test_claude_success_forced_tool_call_and_request_shape(claude_server):
    claude_server.script("record_tags", rec("claude/tagging_ok.json"))
    pr, res = ccall(claude_server, image=JPEG)
    assert res.data["tags"][0] == {"tag": "product:sneaker", "score": 0.96}
    prov = res.provenance
    assert prov["request_id"] == "req_011CTagging0000000000001"
    assert prov["model_version"] == "claude-haiku-4-5-20251001"
    assert (prov["input_tokens"], prov["output_tokens"]) == (3120, 96)
    assert prov["cost_usd"] == pytest.approx((3120 * 1.0 + 96 * 5.0) / 1e6)
    assert prov["prompt_hash"] == pr.hash and prov["prompt_version"] == "v1" and prov["prompt_id"] == "tagging"
    (seen,) = claude_server.requests
    assert seen.path == "/v1/messages" and seen.had_api_key
    assert KEY not in json.dumps(seen.headers)
    body = seen.body
    assert body["tool_choice"] == {"type": "tool", "name": "record_tags"}
    assert body["tools"][0]["input_schema"] == pr.schema
    assert body["tools"][0]["input_schema"]["properties"]["tags"]["items"]["properties"]["tag"]["enum"] == \
        sorted(t["tag"] for t in VOCAB)
    # the stable prefix (tools + system) is marked for Anthropic's prompt cache
    assert body["system"] == [{"type": "text", "text": pr.system, "cache_control": {"type": "ephemeral"}}]
    image, text = body["messages"][0]["content"]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                 "data": base64.b64encode(JPEG).decode()}}
    assert text == {"type": "text", "text": pr.user_text}


def test_claude_prompt_cache_tokens_are_billed_at_their_own_rates(claude_server):
    cached = rec("claude/tagging_ok.json")
    cached["body"]["usage"] = {"input_tokens": 140, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 2980, "output_tokens": 96, "service_tier": "standard"}
    first = rec("claude/tagging_ok.json")
    first["body"]["usage"] = {"input_tokens": 140, "cache_creation_input_tokens": 2980,
                              "cache_read_input_tokens": 0, "output_tokens": 96, "service_tier": "standard"}
    claude_server.script("record_tags", first, cached)
    _, write = ccall(claude_server)
    _, read = ccall(claude_server)
    # haiku 4.5: $1 input, $5 output per MTok; cache writes 1.25x and reads 0.1x the input price
    assert write.provenance["cost_usd"] == pytest.approx((140 * 1.0 + 2980 * 1.25 + 96 * 5.0) / 1e6)
    assert read.provenance["cost_usd"] == pytest.approx((140 * 1.0 + 2980 * 0.1 + 96 * 5.0) / 1e6)
    assert read.provenance["input_tokens"] == write.provenance["input_tokens"] == 3120
    assert read.provenance["cost_usd"] < 0.3 * write.provenance["cost_usd"]


def test_claude_prompt_caching_can_be_switched_off(claude_server):
    claude_server.script("record_tags", rec("claude/tagging_ok.json"))
    s = settings(prompt_caching=False, anthropic_api_key=KEY, anthropic_base_url=claude_server.url)
    pr, _ = ccall(claude_server, s=s, p=ClaudeProvider(s))
    assert claude_server.requests[0].body["system"] == pr.system


def test_claude_429_then_success_honours_retry_after(claude_server):
    claude_server.script("record_tags", rec("claude/429.json"), rec("claude/tagging_ok.json"))
    sleeps: list[float] = []
    _, res = ccall(claude_server, sleeps=sleeps)
    assert claude_server.count() == 2
    assert sleeps == [1.0]  # retry-after: 1
    assert res.provenance["request_id"] == "req_011CTagging0000000000001"


@pytest.mark.parametrize("name,status", [("claude/529.json", 529), ("claude/500.json", 500)])
def test_claude_5xx_is_transient_after_retries(claude_server, name, status):
    claude_server.script("record_tags", rec(name))
    with pytest.raises(TransientError) as ei:
        ccall(claude_server, s=settings(max_attempts=3))
    assert ei.value.reason == f"http_{status}"
    assert claude_server.count() == 3


@pytest.mark.parametrize("name,status", [("claude/400.json", 400), ("claude/401.json", 401)])
def test_claude_4xx_is_permanent_without_retry_and_without_secret(claude_server, name, status):
    claude_server.script("record_tags", rec(name))
    with pytest.raises(PermanentError) as ei:
        ccall(claude_server)
    assert ei.value.reason == f"http_{status}"
    assert claude_server.count() == 1
    assert KEY not in str(ei.value) and KEY not in json.dumps(ei.value.details)


def test_claude_refusal_is_permanent_refused(claude_server):
    claude_server.script("record_alt_text", rec("claude/refusal.json"))
    p = claude(claude_server)
    c = caller(settings(), p)
    with pytest.raises(PermanentError) as ei:
        ccall(claude_server, "alt_text", "claude-sonnet-4-6", image=JPEG, p=p, c=c)
    assert ei.value.reason == "refused"
    assert claude_server.count() == 1
    assert c.ledger.spent_usd == pytest.approx(1650 * 3.0 / 1e6)  # refused input tokens are still billed


@pytest.mark.parametrize("bad", ["claude/tagging_malformed_text.json", "claude/tagging_invalid.json"])
def test_claude_bad_output_then_repaired(claude_server, bad):
    claude_server.script("record_tags", rec(bad), rec("claude/tagging_ok.json"))
    _, res = ccall(claude_server)
    assert res.repaired and res.data["tags"][0]["tag"] == "product:sneaker"
    first, second = claude_server.requests
    repair_text = second.body["messages"][0]["content"][-1]["text"]
    assert "did not satisfy the output schema" in repair_text
    assert '<untrusted_data source="previous_answer">' in repair_text
    assert second.body["system"] == first.body["system"]
    assert second.body["tools"] == first.body["tools"]
    # both calls are paid for
    assert res.provenance["input_tokens"] == 3120 * 2


def test_claude_invalid_twice_is_permanent_with_raw_output(claude_server):
    claude_server.script("record_alt_text", rec("claude/alt_text_image_of.json"), rec("claude/alt_text_image_of.json"))
    with pytest.raises(PermanentError) as ei:
        ccall(claude_server, "alt_text", "claude-sonnet-4-6")
    assert ei.value.reason == "invalid_model_output"
    assert "Image of a red sneaker" in ei.value.details["raw_output"]
    assert claude_server.count() == 2


def test_claude_timeout_is_transient(claude_server):
    claude_server.script("record_tags", rec("claude/tagging_ok.json", delay_s=1.5))
    with pytest.raises(TransientError) as ei:
        ccall(claude_server, s=settings(request_timeout_s=0.3, max_attempts=2))
    assert ei.value.reason == "timeout"
    assert claude_server.count() == 2


# --- Gemini -----------------------------------------------------------------------------------------------

def gemini(server, caching: bool = False) -> GeminiProvider:
    return GeminiProvider(settings(prompt_caching=caching), api_key=GKEY, base_url=server.url)


def gcall(server, task: str, s: Settings | None = None, image: bytes | None = None, sleeps=None):
    pr = prompt(task, provider="gemini", model="gemini-2.5-flash")
    return pr, call(gemini(server), ModelSpec("gemini", "gemini-2.5-flash"), pr, s or settings(provider="gemini"),
                    image=image, sleeps=sleeps)


def test_gemini_success_structured_output_and_request_shape(gemini_server):
    gemini_server.script("alt_text output", rec("gemini/alt_text_ok.json"))
    pr, res = gcall(gemini_server, "alt_text", image=JPEG)
    assert res.data["visible_text"] == "RUNFAST 2"
    assert res.provenance["request_id"] == "x1FtaZ2nLqyD1MkP0alttext"
    assert res.provenance["model_version"] == "gemini-2.5-flash"
    assert (res.provenance["input_tokens"], res.provenance["output_tokens"]) == (1300, 88)
    (seen,) = gemini_server.requests
    assert seen.path.endswith("/models/gemini-2.5-flash:generateContent") and seen.had_api_key
    assert GKEY not in json.dumps(seen.headers) and GKEY not in seen.path
    cfg = seen.body["generationConfig"]
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["responseJsonSchema"] == pr.schema
    assert seen.body["systemInstruction"]["parts"][0]["text"] == pr.system
    parts = seen.body["contents"][0]["parts"]
    inline = parts[0]["inlineData"]  # the SDK sends url-safe base64 and snake-case mime_type here
    assert base64.urlsafe_b64decode(inline["data"]) == JPEG
    assert (inline.get("mimeType") or inline.get("mime_type")) == "image/jpeg"
    assert parts[1]["text"] == pr.user_text


def gemini_tagging_twice(server):
    """Two tagging calls through one Gemini provider with context caching on (one Caller, one event loop)."""
    pr = prompt("tagging", provider="gemini", model="gemini-2.5-flash")
    s, spec, p = settings(provider="gemini"), ModelSpec("gemini", "gemini-2.5-flash"), gemini(server, True)
    c = caller(s, p)

    async def twice():
        try:
            return [await c.run(spec, pr, image=None, media_type="image/jpeg", context={}) for _ in range(2)]
        finally:
            await p.aclose()
    return pr, run(twice())


def test_gemini_context_cache_holds_the_system_instruction_and_is_billed_at_its_rates(gemini_server):
    gemini_server.script("cache_create", rec("gemini/cache_created.json"))
    gemini_server.script("tagging output", rec("gemini/tagging_ok_cached.json"))
    pr, (first, second) = gemini_tagging_twice(gemini_server)
    create, call1, call2 = gemini_server.requests
    assert create.path.endswith("/cachedContents") and create.body["ttl"] == "3600s"
    assert create.body["model"] == "models/gemini-2.5-flash"
    assert create.body["systemInstruction"]["parts"][0]["text"] == pr.system
    for seen in (call1, call2):  # the cache is referenced by name, the instruction not sent again
        assert seen.body["cachedContent"] == "cachedContents/4f9kq2m7x1c8v3b6n0z5"
        assert "systemInstruction" not in seen.body
    # 2.5 flash: 520 full-rate input tokens at $0.30, 1690 cached at $0.03, 41 output at $2.50 per MTok; the first
    # request also pays for storing the cache (1690 tokens at $1.30: input once + one hour of storage)
    plain = (520 * 0.30 + 1690 * 0.03 + 41 * 2.50) / 1e6
    assert second.provenance["cost_usd"] == pytest.approx(plain, rel=1e-9)
    assert first.provenance["cost_usd"] == pytest.approx(plain + 1690 * 1.30 / 1e6, rel=1e-9)
    assert second.provenance["input_tokens"] == 2210


def test_gemini_context_cache_refused_as_too_small_is_not_asked_again(gemini_server):
    gemini_server.script("cache_create", rec("gemini/cache_too_small.json"))
    gemini_server.script("tagging output", rec("gemini/tagging_ok.json"))
    pr, (a, b) = gemini_tagging_twice(gemini_server)
    paths = [r.path.rsplit("/", 1)[-1] for r in gemini_server.requests]
    assert paths == ["cachedContents", "gemini-2.5-flash:generateContent", "gemini-2.5-flash:generateContent"]
    assert all(r.body["systemInstruction"]["parts"][0]["text"] == pr.system for r in gemini_server.requests[1:])
    assert a.provenance["cost_usd"] == b.provenance["cost_usd"] == pytest.approx((2210 * 0.30 + 41 * 2.50) / 1e6)


def test_gemini_context_cache_gone_is_made_again_not_dead_lettered(gemini_server):
    gemini_server.script("cache_create", rec("gemini/cache_created.json"), rec("gemini/cache_created.json"))
    gemini_server.script("tagging output", rec("gemini/cache_gone_403.json"), rec("gemini/tagging_ok_cached.json"))
    pr = prompt("tagging", provider="gemini", model="gemini-2.5-flash")
    s, spec, p = settings(provider="gemini"), ModelSpec("gemini", "gemini-2.5-flash"), gemini(gemini_server, True)
    res = call(p, spec, pr, s, sleeps=[])
    paths = [r.path.rsplit("/", 1)[-1] for r in gemini_server.requests]
    assert paths == ["cachedContents", "gemini-2.5-flash:generateContent"] * 2
    assert res.data["tags"][0]["tag"] == "product:sneaker"


def test_gemini_429_then_success(gemini_server):
    gemini_server.script("tagging output", rec("gemini/429.json"), rec("gemini/tagging_ok.json"))
    sleeps: list[float] = []
    _, res = gcall(gemini_server, "tagging", sleeps=sleeps)
    assert gemini_server.count() == 2 and sleeps == [1.0]  # RetryInfo.retryDelay "1s"
    assert res.data["tags"][0]["tag"] == "product:sneaker"


def test_gemini_503_transient(gemini_server):
    gemini_server.script("tagging output", rec("gemini/503.json"))
    with pytest.raises(TransientError) as ei:
        gcall(gemini_server, "tagging", s=settings(provider="gemini", max_attempts=2))
    assert ei.value.reason == "http_503" and gemini_server.count() == 2


def test_gemini_400_permanent_no_secret(gemini_server):
    gemini_server.script("tagging output", rec("gemini/400.json"))
    with pytest.raises(PermanentError) as ei:
        gcall(gemini_server, "tagging")
    assert ei.value.reason == "http_400" and gemini_server.count() == 1
    assert GKEY not in str(ei.value)


@pytest.mark.parametrize("name", ["gemini/safety_prompt_blocked.json", "gemini/safety_finish.json"])
def test_gemini_safety_block_is_refused(gemini_server, name):
    gemini_server.script("alt_text output", rec(name))
    with pytest.raises(PermanentError) as ei:
        gcall(gemini_server, "alt_text")
    assert ei.value.reason == "refused" and gemini_server.count() == 1


def test_gemini_malformed_json_then_repaired(gemini_server):
    gemini_server.script("tagging output", rec("gemini/tagging_malformed.json"), rec("gemini/tagging_ok.json"))
    _, res = gcall(gemini_server, "tagging")
    assert res.repaired and gemini_server.count() == 2
    assert "did not satisfy" in gemini_server.requests[1].body["contents"][0]["parts"][-1]["text"]


def test_gemini_timeout_transient(gemini_server):
    gemini_server.script("tagging output", rec("gemini/tagging_ok.json", delay_s=2.5))
    with pytest.raises(TransientError) as ei:
        gcall(gemini_server, "tagging", s=settings(provider="gemini", request_timeout_s=1.0, max_attempts=1))
    assert ei.value.reason == "timeout"


def test_request_outcomes_are_counted_once_per_request(claude_server):
    from streams import metrics
    claude_server.script("record_tags", rec("claude/429.json"), rec("claude/tagging_invalid.json"),
                         rec("claude/tagging_ok.json"))
    labels = ("claude", "claude-haiku-4-5", "tagging")
    before = {o: metrics.LLM_REQUESTS.labels(*labels, o)._value.get()
              for o in ("ok", "transient", "invalid_output", "repaired")}
    ccall(claude_server, sleeps=[])
    delta = {o: metrics.LLM_REQUESTS.labels(*labels, o)._value.get() - v for o, v in before.items()}
    assert delta == {"ok": 0, "transient": 1, "invalid_output": 1, "repaired": 1}
    assert claude_server.count() == 3


# --- videos: one call with the poster frame and every keyframe (issue 20) ----------------------------------

def _video_frames():
    """A video's poster frame and one more keyframe (two different small JPEGs)."""
    return JPEG, [("Keyframe at 3.0 s", (REC.parent.parent / "samples" / "product_red_mug.jpg").read_bytes())]


def test_claude_gets_the_poster_and_keyframes_in_one_call(claude_server):
    claude_server.script("record_tags", rec("claude/tagging_ok.json"))
    poster, extra = _video_frames()
    pr = prompt("tagging")
    res = call(claude(claude_server), ModelSpec("claude", "claude-haiku-4-5"), pr, settings(), image=poster,
               extra_images=extra)
    assert res.data["tags"][0]["tag"] == "product:sneaker"  # the recorded answer, validated as usual
    (seen,) = claude_server.requests  # one request for the whole video
    content = seen.body["messages"][0]["content"]
    assert [b["type"] for b in content] == ["text", "image", "text", "image", "text"]
    assert content[0]["text"] == "Poster frame of the video:" and content[2]["text"] == "Keyframe at 3.0 s:"
    assert base64.b64decode(content[1]["source"]["data"]) == poster
    assert base64.b64decode(content[3]["source"]["data"]) == extra[0][1]
    assert content[4] == {"type": "text", "text": pr.user_text}


def test_gemini_gets_the_poster_and_keyframes_in_one_call(gemini_server):
    gemini_server.script("alt_text output", rec("gemini/alt_text_ok.json"))
    poster, extra = _video_frames()
    pr = prompt("alt_text", provider="gemini", model="gemini-2.5-flash")
    res = call(gemini(gemini_server), ModelSpec("gemini", "gemini-2.5-flash"), pr, settings(provider="gemini"),
               image=poster, extra_images=extra)
    assert res.data["visible_text"] == "RUNFAST 2"
    (seen,) = gemini_server.requests
    parts = seen.body["contents"][0]["parts"]
    assert [p.get("text") for p in parts] == ["Poster frame of the video:", None, "Keyframe at 3.0 s:", None,
                                              pr.user_text]
    assert base64.urlsafe_b64decode(parts[1]["inlineData"]["data"]) == poster
    assert base64.urlsafe_b64decode(parts[3]["inlineData"]["data"]) == extra[0][1]
