from __future__ import annotations

from streams.config import Section

from typing import Literal

from pydantic import Field, model_validator


class ValidateSettings(Section):
    """Automation policy and vocabulary (consumers/validate). See docs/validate.md for what each knob does."""

    # --- automation policy ------------------------------------------------------------------------------
    auto_apply_threshold: float = Field(0.85, ge=0.0, le=1.0,
                                        description="model confidence >= this may be auto-applied")
    review_threshold: float = Field(0.7, ge=0.0, le=1.0, description="model confidence < this always needs review")
    between_policy: Literal["review", "auto"] = Field(
        "review", description="what to do with confidence in [review_threshold, auto_apply_threshold)")
    calibration: str | None = Field(
        "bundled", description="confidence calibration: 'bundled' (consumers/validate/calibration.json, fitted on "
                               "labelled data), a path to such a file, or 'off'/null for the model's uncalibrated "
                               "confidence; with it, the thresholds compare the calibrated probability that an "
                               "editor accepts the weakest generated field")
    faces_need_review: bool = Field(True, description="any detected face routes to review (consent / model release)")
    nsfw_review_threshold: float = Field(0.5, ge=0.0, le=1.0, description="NSFW score >= this routes to review")
    nsfw_reject_threshold: float | None = Field(None, ge=0.0, le=1.0,
                                                description="NSFW score >= this is rejected outright; None = never")
    credit_required_needs_review: bool = Field(True, description="assets whose credit must be displayed go to review")
    unknown_rights_need_review: bool = Field(True, description="no licence evidence at all routes to review")
    schema_violation: Literal["reject", "dead_letter"] = Field(
        "reject", description="model output failing its JSON Schema: status 'rejected' (kept, auditable) or a "
                              "PermanentError (dead letter) with the failing JSON paths in details")

    # --- rights ------------------------------------------------------------------------------------------
    commercial_use: bool = Field(True, description="tenants use assets commercially: NC licences are 'restricted'")
    owned_license_markers: list[str] = Field(
        default_factory=lambda: ["owned", "company owned", "work for hire", "work made for hire", "in-house",
                                 "internal", "tenant owned", "staff photographer", "licensed to tenant",
                                 "royalty-free", "royalty free"],
        description="licence text (lower-case substring) meaning the tenant may use the asset freely")

    # --- vocabulary --------------------------------------------------------------------------------------
    taxonomy_path: str | None = Field(None, description="taxonomy file; default = the bundled one")
    taxonomy_version: str | None = Field(None, description="bundled version ('v1', 'v2'); default = latest")
    unknown_tags: Literal["suggest", "drop"] = Field(
        "suggest", description="model tags not in the vocabulary: keep in suggested_tags, or drop")
    min_tag_score: float = Field(0.3, ge=0.0, le=1.0, description="model tags scored below this are dropped")
    tag_publish_min: float | None = Field(
        0.5, ge=0.0, le=1.0,
        description="with a calibration for the answer's model: model tags whose calibrated confidence is below "
                    "this are not published (not in `tags`, the index's tags/facets, XMP or JSON-LD) but held in "
                    "`tag_suggestions` for an editor to accept in review; they do not hold the asset back from "
                    "auto-apply. None publishes every tag (the asset is then judged on its weakest tag)")
    max_tags: int = Field(40, ge=1, description="at most this many canonical tags per asset (best first)")
    scrub_denied_from_raw: bool = Field(
        True, description="also remove deny-listed tags from the enrichment copy carried inside the validated "
                          "record (enrichment.tags and the tag lists in raw_outputs)")

    # --- alt text ----------------------------------------------------------------------------------------
    alt_text_max_chars: int = Field(125, ge=16, description="screen-reader friendly limit for alt text: model alt "
                                                          "text is never published longer")
    alt_text_hard_max_chars: int = Field(250, ge=16, description=(
        "no model or file alt text is published longer (a file's is cut and goes to review); a person's longer one "
        "is refused unless they confirm it as written (review app: send as written; feedback: --force), and is then "
        "published as written (approved when they approve); one in an event's human_fields goes to review"))
    ocr_min_confidence: float = Field(0.6, ge=0.0, le=1.0,
                                      description="OCR mean confidence (0..1; 0..100 is scaled) to trust its text")

    # --- schemas -----------------------------------------------------------------------------------------
    prompt_schemas: bool = Field(True, description="also validate raw_outputs[task] against the prompt's JSON "
                                                   "Schema in prompts/<task>/ when that file exists")

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "ValidateSettings":
        if self.review_threshold > self.auto_apply_threshold:
            raise ValueError("review_threshold must be <= auto_apply_threshold")
        if self.tag_publish_min is not None and self.tag_publish_min > self.auto_apply_threshold:
            raise ValueError("tag_publish_min must be <= auto_apply_threshold (a tag strong enough to auto-apply "
                             "is published)")
        return self
