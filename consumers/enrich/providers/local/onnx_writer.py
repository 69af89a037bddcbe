"""Moved to domain/vision/onnx_writer.py; re-exported for the local provider."""
from domain.vision.onnx_writer import Node, model_bytes  # noqa: F401
