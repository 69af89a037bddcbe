"""Moved to domain/vision/weights.py (the image encoder is shared with the index sink and search); re-exported for
the local provider."""
from domain.vision.weights import read_safetensors, read_torch_checkpoint  # noqa: F401
