"""The validate consumer group: enriched -> validated (controlled vocabulary, alt-text rules, automation policy,
human-edits-win, usage flags)."""
