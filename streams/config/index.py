from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class IndexSettings(BaseModel):
    """Elasticsearch / OpenSearch sink (consumers/index)."""

    url: str = "http://127.0.0.1:9200"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: str | None = None
    index: str = Field("assetstream-assets", description="base name: aliases <index>-read/-write, concrete <index>-vN")
