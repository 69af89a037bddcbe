"""The Elasticsearch client, built from settings.index. Credentials go to the client only, never to logs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from elasticsearch import Elasticsearch

if TYPE_CHECKING:
    from domain.store.settings import IndexSettings


def index_settings(settings: "Any") -> "IndexSettings":
    """Accept the whole Settings or its `index` section."""
    from domain.store.settings import IndexSettings

    return settings if isinstance(settings, IndexSettings) else settings.index


def make_client(settings: "Any") -> Elasticsearch:
    """An Elasticsearch client honouring url, api_key, basic auth, ca_certs/verify_certs, timeouts and
    server_mode ('serverless' = plain application/json, needed by osmem and Elastic Serverless)."""
    s = index_settings(settings)
    kwargs: dict[str, Any] = {
        "request_timeout": s.request_timeout_s,
        "max_retries": s.max_retries,
        "retry_on_timeout": False,
        "server_mode": s.server_mode,
    }
    if s.api_key is not None:
        kwargs["api_key"] = s.api_key.get_secret_value()
    elif s.username:
        kwargs["basic_auth"] = (s.username, s.password.get_secret_value() if s.password else "")
    if s.url.startswith("https"):
        kwargs["verify_certs"] = s.verify_certs
        if s.ca_certs:
            kwargs["ca_certs"] = s.ca_certs
        if not s.verify_certs:
            kwargs["ssl_show_warn"] = False
    return Elasticsearch(s.url, **kwargs)
