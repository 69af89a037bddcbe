"""Vision-model providers behind one interface (see base.py)."""
from __future__ import annotations

from typing import Any

from consumers.enrich.providers.base import Provider, ProviderRequest, ProviderResponse


__all__ = ["Provider", "ProviderRequest", "ProviderResponse", "make_provider", "PROVIDERS"]

PROVIDERS = ("claude", "gemini", "local")


def make_provider(name: str, settings: "Any") -> Provider:
    """Build one provider by name from settings. Imports lazily, so a worker only loads what it uses."""
    if name == "claude":
        from consumers.enrich.providers.claude import ClaudeProvider
        return ClaudeProvider(settings)
    if name == "gemini":
        from consumers.enrich.providers.gemini import GeminiProvider
        return GeminiProvider(settings)
    if name == "local":
        from consumers.enrich.providers.local import LocalProvider
        return LocalProvider(settings)
    raise ValueError(f"unknown provider {name!r} (known: {', '.join(PROVIDERS)})")
