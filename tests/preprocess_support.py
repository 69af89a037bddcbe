"""Shared helpers for the preprocess tests: a real loopback HTTP server, image builders, events, a connect log."""
from __future__ import annotations

import datetime as dt
import io
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont, TiffImagePlugin

from app.settings import Settings
from consumers.preprocess.stage import PreprocessStage

QUALITY_IMAGES = Path(__file__).resolve().parent / "data" / "quality" / "images"
"""the labelled set of bench/quality.py (tests/data/quality/truth.json says what each image shows)"""
_quality_cache: dict[str, dict] = {}


def preprocessed_quality(name: str) -> dict:
    """A PreprocessedAsset dict of one quality-set image, made by the real PreprocessStage (default settings),
    computed once per test process. Callers must not change it (copy first)."""
    return preprocessed_file(QUALITY_IMAGES / name)


def preprocessed_file(path: Path) -> dict:
    """The same for any image file (asset id = its name), cached by path."""
    key = str(path)
    if key not in _quality_cache:
        asset = {"asset_id": path.name, "event_id": f"e-{path.name}", "event_type": "created", "source_uri": None,
                 "content_type": None, "uploader": None, "uploader_notes": None, "declared_license": None,
                 "product_context": None, "tenant": "default", "event_time": 1763780000000, "version": 1,
                 "human_fields": None, "attributes": {}}
        _quality_cache[key] = PreprocessStage(Settings()).preprocess_bytes(asset, path.read_bytes())
    return _quality_cache[key]


R = TiffImagePlugin.IFDRational

# --- every outgoing connect() in this process, seen through CPython's audit hook (not a mock: the real
# socket call is made; the hook only records its address) ---------------------------------------------------
CONNECTS: list[str] = []


def _audit(event: str, args) -> None:
    if event == "socket.connect":
        try:
            addr = args[1]
            CONNECTS.append(str(addr[0]) if isinstance(addr, tuple) else str(addr))
        except Exception:  # noqa: BLE001
            pass


sys.addaudithook(_audit)


def event(uri: str | None, event_type: str = "created", asset_id: str = "asset-1") -> dict:
    return {"asset_id": asset_id, "event_id": f"ev-{asset_id}", "event_type": event_type, "source_uri": uri,
            "content_type": None, "uploader": None, "uploader_notes": None, "declared_license": None,
            "product_context": None, "tenant": "default", "event_time": dt.datetime.now(dt.timezone.utc),
            "version": 1, "human_fields": None, "attributes": {}}


def stage(**preprocess) -> PreprocessStage:
    return PreprocessStage(Settings().with_overrides(preprocess=preprocess))


def jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=kw.pop("quality", 88), **kw)
    return buf.getvalue()


def png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def scene(seed: int = 0, size=(900, 600)) -> Image.Image:
    """A photo-like picture (sky, hills, sun) whose layout depends on the seed."""
    import random

    rnd = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, (rnd.randint(60, 140), rnd.randint(120, 200), 230))
    d = ImageDraw.Draw(img)
    sx, sy = rnd.randint(50, w - 150), rnd.randint(20, h // 3)
    d.ellipse([sx, sy, sx + 100, sy + 100], fill=(255, 220, 90))
    for i in range(4):
        base = h // 2 + i * h // 10
        pts = [(x, base - rnd.randint(0, h // 4)) for x in range(0, w + 100, 100)]
        d.polygon([(0, h)] + pts + [(w, h)], fill=(30 + 30 * i, 100 + 20 * i - rnd.randint(0, 40), 40 + 10 * i))
    return img


def text_image(lines: list[str], size=(1200, 500), font_size: int = 72) -> Image.Image:
    img = Image.new("RGB", size, (250, 250, 245))
    d = ImageDraw.Draw(img)
    f = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        d.text((50, 50 + i * int(font_size * 1.4)), line, font=f, fill=(20, 20, 20))
    return img


def exif_with_gps(lat: float, lon: float, alt: float = 35.0) -> Image.Exif:
    def dms(v: float):
        v = abs(v)
        d = int(v)
        m = int((v - d) * 60)
        s = round(((v - d) * 60 - m) * 60 * 1000)
        return (R(d, 1), R(m, 1), R(s, 1000))

    ex = Image.Exif()
    ex[0x010F] = "Canon"
    ex[0x0110] = "EOS R6"
    sub = ex.get_ifd(0x8769)
    sub[0x829A] = R(1, 500)
    sub[0x829D] = R(4, 1)
    sub[0x8827] = 800
    sub[0x9003] = "2023:09:14 08:15:00"
    sub[0x920A] = R(85, 1)
    sub[0xA434] = "RF85mm F2 MACRO IS STM"
    gps = ex.get_ifd(0x8825)
    gps[1], gps[2] = ("N" if lat >= 0 else "S"), dms(lat)
    gps[3], gps[4] = ("E" if lon >= 0 else "W"), dms(lon)
    gps[5], gps[6] = b"\x00", R(int(alt * 10), 10)
    return ex


def xmp_packet(creator="Ana Gómez", rights="© 2023 Ana Gómez", credit="Ana Gómez / Agencia Sol",
               alt="A fishing boat at dawn in a calm harbour", ext="Long description for screen readers",
               terms="Licensed for web use", title="Harbour at dawn", keywords=("harbour", "boat", "dawn"),
               extra: str = "") -> bytes:
    kws = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return f"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>{extra}
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/"
 xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/" photoshop:Credit="{credit}"
 xmpRights:WebStatement="https://example.org/license">
<dc:creator><rdf:Seq><rdf:li>{creator}</rdf:li></rdf:Seq></dc:creator>
<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{rights}</rdf:li></rdf:Alt></dc:rights>
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
<dc:subject><rdf:Bag>{kws}</rdf:Bag></dc:subject>
<xmpRights:UsageTerms><rdf:Alt><rdf:li xml:lang="x-default">{terms}</rdf:li></rdf:Alt></xmpRights:UsageTerms>
<Iptc4xmpCore:AltTextAccessibility><rdf:Alt><rdf:li xml:lang="fr">Un bateau</rdf:li><rdf:li xml:lang="x-default">{alt}</rdf:li></rdf:Alt></Iptc4xmpCore:AltTextAccessibility>
<Iptc4xmpCore:ExtDescrAccessibility><rdf:Alt><rdf:li xml:lang="x-default">{ext}</rdf:li></rdf:Alt></Iptc4xmpCore:ExtDescrAccessibility>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>""".encode("utf-8")


# --- a real HTTP server on 127.0.0.1 ------------------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    """ThreadingHTTPServer on 127.0.0.1:<free port>; routes map a path to (status, headers, body) or a callable."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict[str, str], bytes] | Route] = {}
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                server.requests.append((self.path, self.headers.get("Host", "")))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    route = (404, {"Content-Type": "text/html"}, b"<html><body>Not Found</body></html>")
                if callable(route):
                    return route(self)
                code, headers, body = route
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # refused TLS handshakes are expected
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def image(self, path: str, data: bytes, content_type: str = "image/jpeg") -> str:
        self.routes[path] = (200, {"Content-Type": content_type}, data)
        return self.url(path)

    def redirect(self, path: str, location: str, code: int = 302) -> str:
        self.routes[path] = (code, {"Location": location}, b"")
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _image_headers(h: BaseHTTPRequestHandler, body: bytes) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()


def slow_route(delay_s: float, body: bytes) -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        _image_headers(h, body)
        try:
            h.wfile.write(body[:10])
            h.wfile.flush()
            time.sleep(delay_s)
            h.wfile.write(body[10:])
        except (BrokenPipeError, ConnectionResetError):
            pass
    return handle


def hanging_until(recovered: threading.Event, body: bytes) -> Route:
    """Headers at once, then one byte every 0.2 s (every attempt runs into fetch_timeout_s) until `recovered`;
    from then on the image at once."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        _image_headers(h, body)
        try:
            if recovered.is_set():
                h.wfile.write(body)
                return
            for i in range(len(body)):
                if recovered.wait(0.2) or i > 50:
                    return
                h.wfile.write(body[i:i + 1])
                h.wfile.flush()
        except OSError:
            pass  # the worker gave up on this attempt
    return handle


def endless_route(chunk: bytes = b"\xff" * 65536, limit: int = 8 * 1024 * 1024) -> Route:
    """Streams a JPEG-looking body with no Content-Length until the client hangs up (or `limit` bytes)."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        try:
            h.wfile.write(b"\xff\xd8\xff\xe0")
            while sent < limit:
                h.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True
    return handle


def two_faces(size=(800, 600)) -> Image.Image:
    """Two drawn frontal faces (skin oval, eyes, brows, nose, mouth, hair) on a plain backdrop, softened like a
    photo: enough structure for OpenCV's frontal-face Haar cascade."""
    from PIL import ImageFilter

    img = Image.new("RGB", size, (120, 140, 160))
    d = ImageDraw.Draw(img)
    for cx in (size[0] * 5 // 16, size[0] * 7 // 10):
        cy, s = size[1] // 2, size[1] * 11 // 30
        d.ellipse([cx - s * 0.5, cy - s * 0.65, cx + s * 0.5, cy + s * 0.65], fill=(224, 172, 140))
        for ex in (-0.2, 0.2):
            d.ellipse([cx + ex * s - s * 0.1, cy - s * 0.2, cx + ex * s + s * 0.1, cy - s * 0.1], fill=(255, 255, 255))
            d.ellipse([cx + ex * s - s * 0.05, cy - s * 0.2, cx + ex * s + s * 0.05, cy - s * 0.1], fill=(40, 25, 20))
            d.rectangle([cx + ex * s - s * 0.13, cy - s * 0.3, cx + ex * s + s * 0.13, cy - s * 0.26], fill=(60, 40, 30))
        d.polygon([(cx, cy - s * 0.1), (cx - s * 0.07, cy + s * 0.12), (cx + s * 0.07, cy + s * 0.12)],
                  fill=(190, 130, 105))
        d.ellipse([cx - s * 0.18, cy + s * 0.25, cx + s * 0.18, cy + s * 0.35], fill=(150, 60, 60))
        d.pieslice([cx - s * 0.55, cy - s * 0.8, cx + s * 0.55, cy - s * 0.2], 180, 360, fill=(50, 35, 25))
    return img.filter(ImageFilter.GaussianBlur(2))


def make_tls_files(directory, hostname: str = "localhost") -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for `hostname` (no IP SAN): (ca.pem, cert.pem, key.pem)."""
    import datetime as _dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = _dt.datetime.now(_dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "assetstream test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(minutes=5))
          .not_valid_after(now + _dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (f"{directory}/ca.pem", f"{directory}/cert.pem", f"{directory}/key.pem")
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


class LocalTLSServer(LocalServer):
    def __init__(self, cert: str, key: str):
        import ssl

        super().__init__()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"


def local_s3(data_dir):
    """SeaweedFS `weed server -s3` on loopback (the project's own embedded S3, with this suite's credentials; its
    request counters on `metrics_port`; room for the buckets of the test session)."""
    from pathlib import Path

    from streams.embedded import SeaweedS3

    return SeaweedS3(data_dir=Path(data_dir), access_key="preprocess", secret_key="preprocess-secret",
                     metrics_port=0, max_volumes=64).start()


def s3_requests(server, bucket: str, kind: str = "GET") -> int:
    """How many `kind` requests (SeaweedFS counts HEAD as GET) the S3 server has answered for `bucket`, whatever
    the status, from its own Prometheus counters."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    return int(sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == "SeaweedFS_s3_request_total" and sample.labels.get("bucket") == bucket
                   and sample.labels.get("type") == kind))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h pixels but carries one tiny IDAT: a decompression-bomb header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def icc_profile(desc: str, rx, gx, bx, gamma: float) -> bytes:
    """A minimal ICC v2 matrix/TRC RGB display profile (D50 colorants, one gamma curve), built by hand as trial
    24's generator did (Pillow's ImageCms can only make sRGB/LAB/XYZ): enough for LittleCMS to convert with."""
    import struct

    def s15(x: float) -> bytes:
        return struct.pack(">i", int(round(x * 65536)))

    def xyz(v) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    curv = b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0\0"
    text = desc.encode() + b"\0"
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 79),
            (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", xyz(rx)), (b"gXYZ", xyz(gx)), (b"bXYZ", xyz(bx)),
            (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv), (b"cprt", b"text\0\0\0\0none\0")]
    off, table, body = 128 + 4 + 12 * len(tags), struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        body += b"\0" * (-(off + len(body)) % 4)
        table += sig + struct.pack(">II", off + len(body), len(data))
        body += data
    size = 128 + len(table) + len(body)
    head = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
            + b"acspAPPL" + b"\0" * 24 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"lcms" + b"\0" * 44)
    return head + table + body


DISPLAY_P3 = icc_profile("Display P3 (test)", (0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419),
                         (0.1571, 0.0666, 0.7841), 2.2)
PROPHOTO = icc_profile("ProPhoto RGB (test)", (0.7977, 0.2880, 0.0), (0.1352, 0.7119, 0.0),
                       (0.0313, 0.0001, 0.8249), 1.8)
