from __future__ import annotations

from domain.vision.thumbnail import THUMBNAIL_EDGE, THUMBNAIL_MAX_BYTES, THUMBNAIL_QUALITY
from streams.config import Section

from typing import Literal

from pydantic import Field


class PreprocessSettings(Section):
    """Fetch, decode, thumbnail, metadata, OCR and hashing limits (consumers/preprocess). See docs/preprocess.md."""

    # --- fetch ---
    file_roots: list[str] = Field(default_factory=list, description="file:// URIs are allowed only under these dirs")
    allow_private_networks: bool = Field(False, description="allow fetching from loopback/private/link-local addresses")
    allow_hosts: list[str] = Field(default_factory=list, description="hosts/CIDRs allowed even if private")
    max_bytes: int = Field(50 * 1024 * 1024, gt=0, description="largest source accepted (streamed, stops here)")
    fetch_timeout_s: float = Field(20.0, gt=0, description="wall-clock limit for one fetch attempt: connect, TLS, "
                                                         "headers and body of every redirect hop together")
    first_attempt_timeout_s: float = Field(5.0, ge=0, description="a record's FIRST http(s) fetch attempt that is "
                                           "not done by then fails as a transient too_slow and goes to the retry "
                                           "topic (later attempts get the full fetch_timeout_s), unless the source "
                                           "declared its length and is sending fast enough to finish within "
                                           "fetch_timeout_s; 0 = off (every attempt gets fetch_timeout_s)")
    fetch_min_rate_bytes_s: int = Field(1024, ge=0, description="after fetch_rate_grace_s on a connection, an http(s) "
                                                              "source must average at least this many bytes/s, else "
                                                              "the attempt fails as too_slow (0 = no floor)")
    fetch_rate_grace_s: float = Field(5.0, ge=0, description="how long a connection may run before the rate floor "
                                                             "applies")
    max_redirects: int = Field(3, ge=0, description="redirect hops followed (each re-checked against the SSRF policy)")
    ca_bundle: str | None = Field(None, description="PEM file of CA certificates for https sources (private CAs); "
                                                    "default: the system store plus certifi")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint for s3:// sources (None = AWS)")
    s3_region: str | None = Field(None, description="S3 region for s3:// sources")
    # --- decode / thumbnail ---
    max_pixels: int = Field(80_000_000, gt=0, description="images with more pixels are refused as decompression bombs")
    decoded_pixels_budget: int = Field(160_000_000, ge=1_000_000, description="decoded pixels a worker process holds "
                                       "at once (each image from its decode to its last signal): a record whose image "
                                       "does not fit waits; one larger than this runs alone. 160 MP: two 80 MP "
                                       "images, ~0.6 GB as RGBA")
    allowed_formats: list[str] = Field(default_factory=lambda: ["JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP", "HEIF"],
                                       description="Pillow format names accepted; HEIF only if pillow-heif is installed")
    thumbnail_edge: int = Field(THUMBNAIL_EDGE, ge=32, le=4096, description="long edge of the JPEG thumbnail carried in the record")
    thumbnail_max_bytes: int = Field(THUMBNAIL_MAX_BYTES, ge=4096, description="hard cap; quality then size drop until it fits")
    thumbnail_quality: int = Field(THUMBNAIL_QUALITY, ge=30, le=95, description="first JPEG quality tried for the thumbnail")
    # --- OCR ---
    ocr_enabled: bool = Field(True, description="read text in images (OCR); false = no OCR text at all")
    ocr_lang: str = Field("eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$", description="tesseract language(s)")
    ocr_gate: Literal["heuristic", "always"] = Field(
        "heuristic", description="heuristic: a cheap text-likelihood check on a small grayscale skips full OCR on "
                                 "images without text; always: run tesseract on every image")
    ocr_engine: Literal["auto", "tesseract", "rapidocr"] = Field(
        "auto", description="auto: RapidOCR (PP-OCR on onnxruntime) when installed; dense pages (>= 5 lines) "
                            "are read by tesseract too and the answer with more words is kept; tesseract alone "
                            "when RapidOCR is missing. Or one engine always")
    ocr_max_edge: int = Field(2000, ge=256, description="OCR runs on the image scaled to at most this long edge")
    ocr_min_confidence: float = Field(30.0, ge=0, le=100, description="words below this tesseract confidence are dropped")
    ocr_timeout_s: float = Field(30.0, gt=0, description="tesseract time limit for an image of up to "
                                                        "ocr_timeout_ref_mpx megapixels (as OCR reads it); a larger "
                                                        "one gets proportionally more. Over it the record is retried "
                                                        "(TransientError); on the last attempt it goes on with OCR "
                                                        "marked degraded and validate sends it to review")
    ocr_timeout_ref_mpx: float = Field(1.0, gt=0, description="megapixels ocr_timeout_s is meant for: the limit is "
                                                              "ocr_timeout_s x max(1, megapixels / this)")
    ocr_max_chars: int = Field(4000, ge=0, description="OCR text is cut to this many characters")
    # --- metadata / signals ---
    gps_privacy: Literal["keep", "round", "drop"] = Field(
        "keep", description="keep: exact GPS + place; round: coordinates rounded to gps_round_digits (altitude "
                            "dropped) and place derived from the rounded point; drop: no coordinates, no place")
    gps_round_digits: int = Field(2, ge=0, le=6, description="gps_privacy=round: decimal places the coordinates "
                                  "keep (2 = about 1 km)")
    faces_enabled: bool = Field(True, description="count faces with BlazeFace confirmed by the face mesh model (model "
                                                  "files in vision.models_dir, checked at worker start)")
    nsfw_enabled: bool = Field(True, description="score with the bundled open_nsfw ONNX model (loaded once, lazily)")
    # --- video (consumers/preprocess/video.py) ---
    video_enabled: bool = Field(True, description="recognise MP4/MOV/WebM/MKV by content and select keyframes; "
                                                  "off: a video is dead-lettered as not an image")
    video_max_bytes: int = Field(256 * 1024 * 1024, gt=0, description="largest video fetched and decoded (held in "
                                                                      "memory while it is worked on); an image "
                                                                      "stays under max_bytes")
    video_max_duration_s: float = Field(3 * 3600.0, gt=0, description="longer videos are refused (video_too_long)")
    video_max_pixels: int = Field(8192 * 4352, gt=0, description="frames with more pixels are refused (video_too_large)")
    video_max_frames: int = Field(1_000_000, gt=0, description="videos declaring more frames are refused "
                                                               "(too_many_frames)")
    video_max_keyframes: int = Field(12, ge=1, le=64, description="keyframes kept per video: the first frame, scene "
                                                                  "changes, then an even spread")
    video_max_scan_keyframes: int = Field(600, ge=1, description="intra frames looked at for scene changes at most")
    video_max_wall_s: float = Field(30.0, gt=0, description="wall-time cap of keyframe selection; past it the "
                                                           "keyframes found so far are used")
    video_frame_edge: int = Field(960, ge=128, le=4096, description="keyframes are scaled to this long edge as they "
                                                                   "are decoded (OCR, hashes, colours run on them)")
    video_scene_threshold: float = Field(0.25, gt=0, le=1, description="mean grey difference (0-1) between intra "
                                                                      "frames that counts as a scene change")
    video_duplicate_threshold: float = Field(0.02, ge=0, le=1, description="a keyframe this close to one already "
                                                                           "kept is dropped (static shots)")
    video_spread_gap_s: float = Field(12.0, gt=0, description="a stretch between intra frames (or from the last "
                                                             "one to the end) longer than this is long-GOP: it is "
                                                             "decoded forward for the spread and its scene changes "
                                                             "(bounded by video_max_wall_s); 12 s is over x264's "
                                                             "longest default GOP, 250 frames at 24 fps. A clip "
                                                             "no longer than this is scanned through for its "
                                                             "scene changes")
    video_keyframe_thumbnail_edge: int = Field(256, ge=0, le=768, description="long edge of each keyframe's small "
                                                                             "JPEG for multi-image model calls "
                                                                             "(0 = none)")
    video_inline_max_bytes: int = Field(0, ge=0, le=16 * 1024 * 1024, description="a video file of at most this "
                                        "size rides along in the record (video.data) so enrich can send it to a "
                                        "provider that takes video directly (enrich.gemini_video); 0 = never. "
                                        "Keep it under the broker's message size limit (message.max.bytes, "
                                        "~1 MB by default) less the keyframes' JPEGs")
