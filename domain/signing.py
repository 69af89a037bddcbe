"""The HMAC scheme shared by the signed DAM webhook we receive (app/ops/ingest.py) and the write-back requests we
send (consumers/writeback): hex HMAC-SHA256 with the shared secret over `<timestamp>.` + the raw body bytes,
sent as `X-Assetstream-Signature: sha256=<hex>` with the unix-seconds timestamp in `X-Assetstream-Timestamp`."""
from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Assetstream-Signature"
TIMESTAMP_HEADER = "X-Assetstream-Timestamp"


def sign(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The X-Assetstream-Signature value for a body: 'sha256=<hex>' of HMAC-SHA256(secret, '<ts>.' + body)."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
