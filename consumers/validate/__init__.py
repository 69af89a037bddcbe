"""The validate consumer group: enriched -> validated (controlled vocabulary, alt-text rules, automation policy,
human-edits-win, usage flags) and the JSON-LD / XMP renderers."""
from consumers.validate.taxonomy import MappedTag, Taxonomy, load_taxonomy, taxonomy_from_settings

__all__ = ["MappedTag", "Taxonomy", "load_taxonomy", "taxonomy_from_settings"]
