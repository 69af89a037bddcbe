"""The index mapping version this code writes, apart from domain/store/management.py so that `assetstream
--version` can say it without loading the store client (domain/store/management.py re-exports it)."""

MAPPING_VERSION = 6
"""Bump when MAPPINGS change in a way that needs a reindex; recorded in the index's _meta.
2: tag_synonyms (text), text_vector or text_vector_b64 (+ text_vector_model), per index.vector_mode.
3: degraded parts (domain/store/degraded.py): `degraded_parts`, `completeness`, `provenance.degraded` (issue 21);
   media_type, duration_s, video (container facts, keyframes with their text), transcript (issue 20).
4: `tag_suggestions` (keyword): weak model tags held for review, never in `tags`/`facets` (issue 15);
   image_vector or image_vector_b64 (+ image_vector_model): EfficientNet-Lite0 pooled features, per vector_mode;
   family_id, family_size, family_canonical (duplicate families) (issue 17).
5: `model_tags` (keyword): the model's other proposed tags, weak evidence for search's tag leg (issue 17).
6: every text field analyzed with TEXT_ANALYZER (the `english` analyzer plus ASCII folding): "cafe" finds "Café",
   "zurich" "Zürich" (trial 23). An analyzer cannot change on an existing index: `assetstream index migrate`."""
