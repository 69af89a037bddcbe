"""A model loaded once per process on first use, under a lock; when loading fails, a warning is logged once and
the model stays None (the caller degrades: no score, another engine), never retried in a hot loop."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class LazyModel:
    def __init__(self, load: Callable[[], Any], unavailable: str) -> None:
        self._load = load
        self._unavailable = unavailable
        """warning logged when loading fails, e.g. 'NSFW model unavailable, nsfw_score will be null'"""
        self._lock = threading.Lock()
        self._model: Any = None
        self._failed = False

    def get(self) -> Any:
        if self._model is not None or self._failed:
            return self._model
        with self._lock:
            if self._model is None and not self._failed:
                try:
                    self._model = self._load()
                except Exception as exc:  # noqa: BLE001
                    self._failed = True
                    log.warning("%s: %s", self._unavailable, exc)
        return self._model
