"""The review consumer group: feedback (EditorDecision) -> validated. A person's decision becomes the published
record: merged into the asset's HumanReview and applied to what the index holds (see docs/review.md)."""
