"""Moved to domain/vision/classifier.py (the index sink and search embed images with it too); re-exported for the
local provider."""
from domain.vision.classifier import (  # noqa: F401
                                      INPUT_SIZE,
                                      MEAN,
                                      STD,
                                      VARIANT,
                                      VARIANTS,
                                      Classifier,
                                      build_onnx,
                                      decode_image,
                                      package_version,
                                      preprocess,
                                      weights_path,
)
