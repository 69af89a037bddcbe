"""Moved to domain/textembed.py (the index sink and search embed text too); re-exported for the local provider."""
from domain.textembed import (  # noqa: F401
                              DOC_MAX_LEN,
                              ENCODER_VERSION,
                              MAX_LEN,
                              MODEL_ID,
                              TextEmbedder,
                              WordPiece,
                              model_dir,
                              model_version,
                              package_version,
                              shared_embedder,
)
