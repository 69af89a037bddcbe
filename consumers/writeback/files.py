"""Files: the approved metadata written into a copy of the original as XMP + IPTC with ExifTool.

    - name: files
      type: files
      out_dir: /srv/dam-export                  # copies land here: <asset id, file-safe>-<8 hex of its sha1>.<ext>
      source_roots: [/srv/dam-originals]        # file:// originals are read only under these directories

or, with an S3 API (AWS, MinIO, SeaweedFS; credentials from the usual AWS environment):

      out_dir: s3://dam-export/enriched          # copies are objects under this prefix
      source_roots: [s3://dam-originals/library]  # s3:// originals are read only under these prefixes
      s3_endpoint_url: http://minio:9000          # None = AWS

The first write copies the original; later writes update the copy in place (through a temporary file and an
atomic rename, or one PutObject with the Content-Type of the bytes as preprocess sniffed them, not of the name),
so what a person changed in the copy since is still there. An S3 object read() downloaded is the one write()
starts from (one GET per changed record; dropped by write() or the sink's release()).
Per field (ExifTool tag names, several joined with ',' are written together and read from the first):

    alt_text    -> XMP-iptcCore:AltTextAccessibility      summary     -> XMP-iptcCore:ExtDescrAccessibility
    title       -> XMP-photoshop:Headline, IPTC:Headline  caption     -> XMP-dc:Description, IPTC:Caption-Abstract
    tags        -> XMP-dc:Subject, IPTC:Keywords          credit_text -> XMP-photoshop:Credit, IPTC:Credit
    licensing   -> XMP-xmpRights:UsageTerms

Rights words come only from the file or a person (plan.our_value, domain.render.rights_text): a model's credit
or licence paraphrase is never written into photoshop:Credit / IPTC:Credit / UsageTerms, approved or not, and a
licence URL is no usage terms. An IIM value over its dataset's byte limit (Credit: 32) is written to the XMP tag
only (IIM_LIMITS). The copy gets the file mode of what it was made from (the original, our earlier copy), 0644
when that was an S3 object.

Keywords are merged: the file's own (human) keywords stay, ours are added, and ours that we wrote before and no
longer suggest are removed. Every write also stamps our provenance namespace (XMP-assetstream: asset id, status,
pipeline version, whether the image is decorative (`Decorative` True/False: a decorative image's alt text is
written as an explicit empty `AltTextAccessibility`, and it gets no `ExtDescrAccessibility` of ours), per task the
provider, model, version, prompt id/version/hash and timestamp; the ExifTool
config next to this module defines it), and every written tag is read back with ExifTool before the copy replaces
the previous one. IPTC IIM goes only into formats that carry it (JPEG, TIFF); PNG/WebP/HEIC get the XMP.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import mimetypes
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from consumers.writeback import plan
from consumers.writeback.limits import Pacer
from consumers.writeback.objects import Location, Objects, S3Key, folder, parse_s3, under
from consumers.writeback.settings import TargetSettings
from domain.records import asset_of, document_id
from domain.sources import file_path, sniffed_media_type
from streams.errors import PermanentError, TransientError
from streams.records import to_ms

log = logging.getLogger(__name__)
IIM_FORMATS = {".jpg", ".jpeg", ".tif", ".tiff"}
IIM_LIMITS = {"IPTC:Credit": 32, "IPTC:Source": 32, "IPTC:By-line": 32, "IPTC:Headline": 256,
              "IPTC:Caption-Abstract": 2000, "IPTC:CopyrightNotice": 128, "IPTC:SpecialInstructions": 256}
"""IIM datasets' maximum lengths in bytes (IPTC-IIM 4.2): a longer value goes to the XMP tag only."""
LIST_TAGS = {"XMP-dc:Subject", "IPTC:Keywords"}
PROVENANCE = (("task", "Task"), ("provider", "Provider"), ("model", "Model"), ("model_version", "ModelVersion"),
              ("prompt_id", "PromptId"), ("prompt_version", "PromptVersion"), ("prompt_hash", "PromptHash"))


def output_name(asset_id: str, suffix: str) -> str:
    """Unique per asset id (the hash), readable (the id's own characters, file-safe)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in asset_id).strip(".")[:80] or "asset"
    return f"{safe}-{hashlib.sha1(asset_id.encode()).hexdigest()[:8]}{suffix.lower()}"


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    import datetime as dt
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y:%m:%d %H:%M:%S.%f")[:-3] + "Z"


class FilesTarget:
    merges_lists = True
    holds_the_original = True
    """A value in the copy we never wrote is the original file's own, which preprocess read and the review app
    showed: an editor's edit of that field replaces it (plan.decide's `edited`); an accepted value does not."""

    def __init__(self, cfg: TargetSettings, global_pacer: Pacer, exiftool: str | None = None):
        self.cfg, self.name = cfg, cfg.name
        self.global_pacer, self.pacer = global_pacer, Pacer(cfg.rate_per_s)
        out = folder(cfg.out_dir or ".")
        self.out_dir = out.resolve() if isinstance(out, Path) else out
        self.roots = [r.resolve() if isinstance(r, Path) else r for r in map(folder, cfg.source_roots)]
        self.objects = Objects(cfg.name, cfg.s3_endpoint_url, cfg.s3_region, cfg.timeout_s, cfg.max_bytes)
        self.exiftool = exiftool or shutil.which("exiftool") or "exiftool"
        self._config = importlib.resources.files("consumers.writeback").joinpath("exiftool.config")
        # per record between read() and write(): at most one download each, dropped by write() or release()
        self._held: dict[str, _Held] = {}
        self._held_lock = threading.Lock()

    # --- where ------------------------------------------------------------------------------------------------
    def source(self, value: dict[str, Any]) -> Location:
        uri = asset_of(value).get("source_uri") or ""
        parsed = urlparse(uri)
        try:
            loc: Location | None = parse_s3(uri)
        except ValueError:  # s3 without a bucket, or a `..` segment
            raise PermanentError(f"{self.name}: {parsed.scheme}:// original outside the configured source_roots",
                                 reason="forbidden_source", details={"target": self.name}) from None
        if loc is None:
            if parsed.scheme not in ("file", "") or parsed.netloc:
                raise PermanentError(f"{self.name}: only file:// and s3:// originals can be copied "
                                     f"(got {parsed.scheme or '?'}://)", reason="unsupported_source",
                                     details={"target": self.name})
            loc = Path(file_path(uri)).resolve()  # the name's bytes, whatever its encoding
        if not any(under(loc, root) for root in self.roots):
            raise PermanentError(f"{self.name}: the original is not under the configured source_roots",
                                 reason="forbidden_source", details={"target": self.name})
        if isinstance(loc, Path) and not loc.is_file():
            raise PermanentError(f"{self.name}: the original {loc.name} does not exist", reason="source_missing",
                                 details={"target": self.name})
        return loc

    def output(self, value: dict[str, Any]) -> Location:
        name = output_name(document_id(value), self.source(value).suffix)
        return self.out_dir.child(name) if isinstance(self.out_dir, S3Key) else self.out_dir / name

    def _base(self, value: dict[str, Any], work: Path) -> tuple[Location, Path]:
        """(the copy's location, a local file to start from): our earlier copy if there is one, else the original
        (the first time: the original's own, human, values)."""
        out = self.output(value)
        if isinstance(out, Path):
            if out.exists():
                return out, out
        elif (earlier := self.objects.download(out, work, missing_ok=True)) is not None:
            return out, earlier
        src = self.source(value)
        return out, (src if isinstance(src, Path) else self.objects.download(src, work))

    # --- ExifTool ---------------------------------------------------------------------------------------------
    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        with importlib.resources.as_file(self._config) as config:
            try:
                return subprocess.run([self.exiftool, "-config", str(config), "-charset", "iptc=UTF8", *args],
                                      capture_output=True, timeout=self.cfg.timeout_s)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise TransientError(f"{self.name}: exiftool did not run: {type(e).__name__}",
                                     reason="exiftool_unavailable", details={"target": self.name}) from None

    def read_tags(self, path: Path, tags: list[str]) -> dict[str, Any]:
        proc = self._run(["-j", "-G1", "-struct", *[f"-{t}" for t in tags], str(path)])
        if proc.returncode != 0:
            raise PermanentError(f"{self.name}: exiftool cannot read {path.name}: {proc.stderr.decode()[:200]}",
                                 reason="unreadable_file", details={"target": self.name})
        doc = (json.loads(proc.stdout or b"[{}]") or [{}])[0]
        out = {}
        for t in tags:
            if t in doc:
                v = doc[t]
                out[t] = [str(x) for x in v] if isinstance(v, list) else ([str(v)] if t in LIST_TAGS else str(v))
        return out

    def _tags(self, theirs: str, suffix: str) -> list[str]:
        tags = [t.strip() for t in theirs.split(",") if t.strip()]
        return [t for t in tags if not t.upper().startswith("IPTC:") or suffix in IIM_FORMATS]

    # --- the target's interface -----------------------------------------------------------------------------
    def read(self, value: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        work = tempfile.TemporaryDirectory(prefix="writeback-")
        try:
            out, path = self._base(value, Path(work.name))
            suffix = _format_of(value, out)[1]
            firsts = {theirs: self._tags(theirs, suffix)[0] for theirs in self.cfg.fields.values()}
            found = self.read_tags(path, sorted(set(firsts.values())))
        except BaseException:
            work.cleanup()
            raise
        if path.is_relative_to(work.name):  # downloaded from S3: the write starts from these bytes
            self._hold(value, _Held(work, out, path))
        else:
            work.cleanup()
        return {theirs: found[first] for theirs, first in firsts.items() if first in found}, None

    def write(self, value: dict[str, Any], fields: dict[str, Any], etag: str | None,
              previous: dict[str, Any] | None = None) -> str | None:
        held = self._take(value)
        work = held.work if held else tempfile.TemporaryDirectory(prefix="writeback-")
        try:
            self.global_pacer.acquire()
            self.pacer.acquire()
            out, base = (held.out, held.base) if held else self._base(value, Path(work.name))
            media_type, suffix = _format_of(value, out)
            args, expect = self._assignments(value, fields, previous or {}, base, suffix)
            self._commit(base, out, args, expect, Path(work.name), suffix, media_type)
        finally:
            work.cleanup()
        return None

    def as_stored(self, wanted: dict[str, Any]) -> dict[str, Any]:
        return wanted  # XMP and IPTC hold text as it is

    def release(self, value: dict[str, Any]) -> None:
        """The record is done with (written, nothing to write, or failed): drop what read() kept for it."""
        held = self._take(value)
        if held:
            held.work.cleanup()

    # --- the object read() downloaded, kept for write() ----------------------------------------------------
    def _hold(self, value: dict[str, Any], held: "_Held") -> None:
        with self._held_lock:
            earlier = self._held.pop(document_id(value), None)
            self._held[document_id(value)] = held
        if earlier:
            earlier.work.cleanup()

    def _take(self, value: dict[str, Any]) -> "_Held | None":
        with self._held_lock:
            return self._held.pop(document_id(value), None)

    def _assignments(self, value: dict[str, Any], fields: dict[str, Any], previous: dict[str, Any], base: Path,
                     suffix: str) -> tuple[list[str], dict[str, Any]]:
        """ExifTool's arguments for the new values, and what each first tag must read back as."""
        args: list[str] = ["-overwrite_original", "-m"]
        expect: dict[str, Any] = {}
        if suffix in IIM_FORMATS:
            args.append("-IPTC:CodedCharacterSet=UTF8")
        decisions = plan.decided(value, self.cfg.fields)
        for theirs, ours in fields.items():
            tags = self._tags(theirs, suffix)
            if isinstance(ours, list):
                have = self.read_tags(base, tags[:1]).get(tags[0], [])
                dropped = set(map(str, previous.get(theirs) or [])) - set(map(str, ours))
                merged = [k for k in have if k not in dropped] + [k for k in map(str, ours) if k not in have]
                for tag in tags:  # several assignments of a list tag = the whole new list
                    args += [f"-{tag}={_line(k)}" for k in merged] if merged else [f"-{tag}="]
                expect[tags[0]] = merged
            elif theirs in decisions and ours == "":  # an explicit empty value (decorative), not a deletion
                args += [f"-{tag}^=" for tag in tags]
                expect[tags[0]] = ""
            else:
                text = "" if ours is None else _line(str(ours))
                for tag in tags:
                    if len(text.encode()) > IIM_LIMITS.get(tag, len(text.encode())):
                        # over the IIM dataset's byte limit: strict readers cut or refuse it; the XMP has it whole
                        log.info("writeback %s: %s is %d bytes, over the IIM limit of %d: written to XMP only",
                                 self.name, tag, len(text.encode()), IIM_LIMITS[tag])
                        continue
                    args.append(f"-{tag}={text}")
                if text:
                    expect[tags[0]] = text
        return args + self._provenance(value), expect

    def _commit(self, base: Path, out: Location, args: list[str], expect: dict[str, Any], work: Path,
                suffix: str, media_type: str | None) -> None:
        """Write into a temporary copy named with `suffix` (ExifTool writes a format by its extension: a JPEG
        named .png is "not a valid PNG"), read every tag back, then replace the copy in one step (rename in a
        folder, one PutObject in S3 with `media_type` as its Content-Type)."""
        tmp_dir = out.parent if isinstance(out, Path) else work
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".writeback-", suffix=suffix, dir=tmp_dir)
            os.close(fd)
            tmp = Path(tmp_name)
            shutil.copyfile(base, tmp)
        except OSError as e:
            raise TransientError(f"{self.name}: cannot write to the output folder: {type(e).__name__}",
                                 reason="output_unavailable", details={"target": self.name}) from None
        try:
            argfile = tmp.with_suffix(".args")
            argfile.write_text("\n".join(args + [str(tmp)]) + "\n", encoding="utf-8")
            proc = self._run(["-@", str(argfile)])
            argfile.unlink()
            if proc.returncode != 0:
                raise PermanentError(f"{self.name}: exiftool cannot write {base.suffix} metadata: "
                                     f"{proc.stderr.decode(errors='replace')[:200]}", reason="exiftool_failed",
                                     details={"target": self.name})
            back = self.read_tags(tmp, list(expect))
            wrong = [t for t, v in expect.items() if back.get(t) != v]
            if wrong:
                raise PermanentError(f"{self.name}: read back differs for {', '.join(wrong)}",
                                     reason="verify_failed", details={"target": self.name, "tags": ",".join(wrong)})
            if isinstance(out, Path):
                # the mkstemp file is 0600: the copy gets the mode of what it was made from (the original, our
                # earlier copy), 0644 when that was downloaded, so an export folder others read can be read
                local = base.is_file() and not base.is_relative_to(work)
                os.chmod(tmp, (base.stat().st_mode & 0o777) if local else 0o644)
                os.replace(tmp, out)
            else:
                self.objects.upload(tmp, out, media_type)
        finally:
            tmp.unlink(missing_ok=True)

    def _provenance(self, value: dict[str, Any]) -> list[str]:
        asset = asset_of(value)
        stamp = value.get("stamp") or {}
        args = ["-XMP-assetstream:all="]
        # the decorative flag, as in the run's XMP sidecar: an empty alt text is a decision, not a missing one
        args.append(f"-XMP-assetstream:Decorative={'True' if value.get('decorative') else 'False'}")
        for name, v in (("AssetId", asset["asset_id"]), ("Status", value.get("status")),
                        ("PipelineVersion", stamp.get("version")), ("ValidatedAt", _iso(to_ms(stamp.get("at"))))):
            if v:
                args.append(f"-XMP-assetstream:{name}={_line(str(v))}")
        for p in (value.get("enriched") or {}).get("provenance") or []:
            for key, name in PROVENANCE:
                args.append(f"-XMP-assetstream:Provenance{name}={_line(str(p.get(key) or ''))}")
            args.append(f"-XMP-assetstream:ProvenanceTimestamp={_iso(to_ms(p.get('timestamp'))) or ''}")
        return args

    def paused(self) -> str | None:
        return None

    def close(self) -> None:
        with self._held_lock:
            held, self._held = list(self._held.values()), {}
        for h in held:
            h.work.cleanup()


@dataclass
class _Held:
    """An S3 object read() downloaded (into its own temporary folder), for the write() of the same record."""
    work: tempfile.TemporaryDirectory
    out: Location
    base: Path


def _format_of(value: dict[str, Any], out: Location) -> tuple[str | None, str]:
    """(media type, file extension) of the bytes as preprocess sniffed them: a JPEG named .png is image/jpeg, .jpg
    (the S3 copy's Content-Type; the extension ExifTool writes it by and that decides IPTC IIM). The copy keeps the
    original's name, and the name's extension when it says what the bytes are (.jpeg, .JPG); the name decides
    only when preprocess sniffed no format."""
    pre = (value.get("enriched") or {}).get("pre") or {}
    sniffed, named = sniffed_media_type(pre), mimetypes.guess_type(out.name)[0]
    if sniffed is None or sniffed == named:
        return named, out.suffix
    return sniffed, mimetypes.guess_extension(sniffed) or out.suffix


def _line(text: str) -> str:
    """One argfile line: ExifTool takes a value per line."""
    return " ".join(text.splitlines())
