"""The generic DAM target: one JSON request per asset to a configured URL template.

    PATCH https://dam.example/api/assets/<asset id>           (the url's {asset_id}; {tenant}: the record's tenant)
    Content-Type: application/json
    Idempotency-Key: <sha256 of target, asset, version, decision, last write, body>  (plan.write_key: a retry of
                                                            this write = the same key; X -> Y -> X = three keys)
    X-Assetstream-Timestamp / X-Assetstream-Signature       (hmac_secret: the ingest webhook's scheme)
    Authorization: Bearer ... | X-API-Key: ...               (bearer_token | api_key)
    If-Match: <ETag of the GET before>                       (when the target sent one)

With `read_current` the asset is first read with GET on the same URL (a JSON object holding the mapped fields,
dots = nested objects). How answers are classified: consumers/writeback/http.py.
"""
from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from consumers.writeback.http import HttpTarget
from consumers.writeback.plan import MISSING, get_path, nest, write_key
from domain.records import asset_of, tenant_of
from domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


class WebhookTarget(HttpTarget):
    def url(self, value: dict[str, Any]) -> str:
        return (self.cfg.url.replace("{tenant}", quote(tenant_of(value), safe=""))
                .replace("{asset_id}", quote(asset_of(value)["asset_id"], safe="")))

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": "assetstream-writeback"}
        if self.cfg.bearer_token:
            h["Authorization"] = "Bearer " + self.cfg.bearer_token.get_secret_value()
        if self.cfg.api_key:
            h[self.cfg.api_key_header] = self.cfg.api_key.get_secret_value()
        return h

    def read(self, value: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        resp = self.request("GET", self.url(value), headers=self._headers())
        doc = self.json_of(resp)
        current = {}
        for theirs in self.cfg.fields.values():
            v = get_path(doc, theirs)
            if v is not MISSING:
                current[theirs] = v
        return current, resp.headers.get("etag")

    def write(self, value: dict[str, Any], fields: dict[str, Any], etag: str | None,
              previous: dict[str, Any] | None = None) -> str | None:
        body = json.dumps(nest(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        h = {**self._headers(), "Content-Type": "application/json",
             "Idempotency-Key": write_key(self.name, value, body, previous)}
        if self.cfg.hmac_secret:
            ts = str(int(time.time()))
            h[TIMESTAMP_HEADER] = ts
            h[SIGNATURE_HEADER] = sign(self.cfg.hmac_secret.get_secret_value(), ts, body)
        if etag:
            h["If-Match"] = etag
        return self.request(self.cfg.method, self.url(value), headers=h, content=body).headers.get("etag")
