"""Moved to domain/vision/imagenet_labels.py; re-exported for the local provider."""
from domain.vision.imagenet_labels import IMAGENET_CLASSES  # noqa: F401
