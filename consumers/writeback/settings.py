"""The `writeback` section: where approved metadata goes (consumers/writeback). See docs/writeback.md.

    writeback:
      targets:
        - name: dam
          type: webhook
          url: https://dam.example/api/assets/{asset_id}
          method: PATCH
          fields: {alt_text: altText, caption: caption, tags: keywords}
          hmac_secret: ...            # or ASSETSTREAM_WRITEBACK__TARGETS='[{"name": "dam", ...}]'
          bearer_token: ...
          rate_per_s: 20
          tenants: [default]          # whose records it takes (the default); ["*"] = every tenant, with {tenant}
"""
from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from domain.events import DEFAULT_TENANT, MAX_TENANT, identifier_problem
from streams.config import Section
from streams.settings import SettingsFix

#: the record fields a target may take (ValidatedAsset names); `tags` is the list of tag labels
WRITABLE_FIELDS = ("title", "alt_text", "caption", "summary", "credit_text", "licensing", "tags", "decorative",
                   "usage_flag")


DEFAULT_FIELDS = {
    "webhook": {"alt_text": "alt_text", "caption": "caption", "title": "title"},
    "wordpress": {"alt_text": "alt_text", "caption": "caption", "summary": "description"},
    "files": {"alt_text": "XMP-iptcCore:AltTextAccessibility", "summary": "XMP-iptcCore:ExtDescrAccessibility",
              "title": "XMP-photoshop:Headline,IPTC:Headline", "caption": "XMP-dc:Description,IPTC:Caption-Abstract",
              "tags": "XMP-dc:Subject,IPTC:Keywords", "credit_text": "XMP-photoshop:Credit,IPTC:Credit",
              "licensing": "XMP-xmpRights:UsageTerms"},
}


EVERY_TENANT = "*"

SUGGESTED_META = {"alt_text": "meta.assetstream_suggested_alt_text", "caption": "meta.assetstream_suggested_caption",
                  "summary": "meta.assetstream_suggested_description"}
"""Where a WordPress `suggest` target puts our fields: the post meta deploy/wordpress/assetstream-suggestions.php
registers and shows the editor (the media item's own fields are live on the site)."""


def _has_userinfo(url: str) -> bool:
    """The URL names credentials (`http://user:pass@host/...`), which httpx sends as Basic auth."""
    return re.match(r"^https?://[^/?#]*@", url, re.IGNORECASE) is not None


def _loopback(url: str) -> bool:
    """The URL's host is this machine (127.0.0.0/8, ::1, localhost): nothing on it crosses a network. Not a
    `*.localhost` name: that it resolves to loopback is a resolver's convention, and a DNS wildcard (a cluster's)
    may send it anywhere (code review 16)."""
    host = (urlsplit(url.replace("{asset_id}", "x").replace("{tenant}", "x")).hostname or "").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TargetSettings(Section):
    """One write-back target. Its URL comes from here only, never from record data (no SSRF through events)."""

    name: str = Field(..., description="unique per deployment: labels metrics, keys the fingerprints")
    type: Literal["webhook", "wordpress", "files"] = Field(
        "webhook", description="webhook = a generic DAM REST/webhook endpoint; wordpress = media items via the "
                               "WordPress REST API; files = XMP + IPTC in a copy of the original (ExifTool)")
    url: str | None = Field(None, description="webhook: URL template, {asset_id} (required) replaced by the "
                                      "(URL-quoted) asset id; "
                                      "wordpress: the site's URL (REST root <url>/wp-json)")
    method: Literal["PATCH", "PUT", "POST"] = Field("PATCH", description="webhook: the HTTP method of a write")
    mode: Literal["write", "suggest"] = Field(
        "write", description="write: approved | auto_applied records only; suggest: also needs_review records "
                             "(the target shows them to an editor)")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="declarative mapping our field -> their field: a JSON field for webhook/wordpress (dots make "
                    "nested objects: 'meta.alt'), ExifTool tags for files ('XMP-dc:Subject,IPTC:Keywords'); "
                    "empty = the type's default mapping")
    read_current: bool = Field(
        True, description="GET the URL first: skip fields already equal, never overwrite a field a person changed "
                          "in the target after our last write, send If-Match with its ETag")
    protect_unknown: bool = Field(
        True, description="a field the target already holds a different non-empty value for, and that we never "
                          "wrote, counts as a person's: left alone (conflict)")
    hmac_secret: SecretStr | None = Field(None, description="signs each body (X-Assetstream-Signature), as the "
                                                            "ingest webhook checks it")
    bearer_token: SecretStr | None = Field(None, description="webhook: sent as Authorization: Bearer <token>")
    api_key: SecretStr | None = Field(None, description="webhook: sent in the api_key_header header")
    api_key_header: str = Field("X-API-Key", description="webhook: the header carrying api_key")
    username: str | None = Field(None, description="wordpress: the user the application password belongs to")
    application_password: SecretStr | None = Field(None, description="wordpress: an application password")
    media_id_attribute: str = Field("wordpress_media_id", description="wordpress: the asset event attribute "
                                    "holding the media id; without it the media item is found by source URL")
    out_dir: str | None = Field(None, description="files: the folder the copies are written to, or "
                                "s3://bucket/prefix")
    source_roots: list[str] = Field(default_factory=list, description="files: originals (file:// or s3://) are "
                                    "read only under these directories or s3://bucket/prefix roots")
    s3_endpoint_url: str | None = Field(None, description="files: S3-compatible endpoint for s3:// originals and "
                                        "out_dir (None = AWS); credentials from the usual AWS environment")
    s3_region: str | None = Field(None, description="files: S3 region for s3:// originals and out_dir")
    max_bytes: int = Field(200 * 1024 * 1024, gt=0, description="files: larger originals are refused (dead letter)")
    timeout_s: float = Field(10.0, gt=0, description="time limit of one request to the target (files: of one "
                             "read or write and of ExifTool)")
    rate_per_s: float | None = Field(None, gt=0, description="at most this many requests per second (per worker)")
    failure_threshold: int = Field(3, ge=1, description="consecutive transient failures that open the breaker")
    open_s: float = Field(5.0, gt=0, description="how long the open breaker pauses the partitions before a trial")
    tenants: list[str] = Field(
        default_factory=lambda: [DEFAULT_TENANT],
        description="the tenants whose records this target takes; another tenant's record is skipped (counted, "
                    "never sent). Default: the default tenant only. [\"*\"] = every tenant (a webhook url with "
                    "{tenant}); a webhook serving more than one tenant needs {tenant} in its url")
    allow_insecure_http: bool = Field(
        False, description="send credentials (bearer_token, api_key, application_password, a URL password) over "
                           "plain http:// to a host that is not loopback; off: such a target is refused at load")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/{}]+", v):
            raise ValueError("url must be http(s)://host/... (the host is fixed: {asset_id} and {tenant} only in "
                             "the path)")
        return v

    @field_validator("tenants", mode="before")
    @classmethod
    def _one_or_many_tenants(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"tenants is empty: name the tenants this target serves (e.g. [{DEFAULT_TENANT}]), "
                             f"or [\"{EVERY_TENANT}\"] for every tenant")
        for tenant in value:
            problem = None if tenant == EVERY_TENANT else identifier_problem(tenant, MAX_TENANT, scoped=True)
            if problem is not None:
                raise ValueError(f"tenant {problem}")
        return list(dict.fromkeys(value))

    def serves(self, tenant: str | None) -> bool:
        """Whether a record of this tenant (None: the default tenant) may be sent to this target."""
        return EVERY_TENANT in self.tenants or (tenant or DEFAULT_TENANT) in self.tenants

    @model_validator(mode="after")
    def _per_type(self):
        if self.type in ("webhook", "wordpress") and not self.url:
            raise ValueError(f"writeback target {self.name!r} ({self.type}) needs a url")
        if self.type == "webhook" and "{asset_id}" not in self.url:  # the body does not name the asset
            raise ValueError(f"writeback target {self.name!r} (webhook): the url has no {{asset_id}}, so every "
                             "asset would be written to that one record; put {asset_id} where the asset's id goes, "
                             "e.g. https://dam.example/api/assets/{asset_id}")
        if self.type == "webhook" and self.bearer_token is not None and _has_userinfo(self.url):
            # httpx turns the URL's user:password into an Authorization: Basic header that replaces ours
            raise ValueError(f"writeback target {self.name!r} (webhook): both a user:password in url and a "
                             "bearer_token are set, and only the URL's credentials would be sent (as Basic auth; "
                             "the bearer token would be silently dropped); keep one: remove user:password@ from "
                             "url, or remove bearer_token")
        if self.type == "wordpress" and _has_userinfo(self.url):
            # the application password goes as Basic auth (it would replace the URL's, or an empty one would)
            raise ValueError(f"writeback target {self.name!r} (wordpress): the url holds a user:password, which is "
                             "never sent (WordPress gets the application password as Basic auth); remove "
                             "user:password@ from url and set username and application_password")
        if self.type in ("webhook", "wordpress"):
            self._tenants_fit_the_url()
            self._no_credentials_in_clear()
        if self.type == "files":
            if not (self.out_dir and self.source_roots):
                raise ValueError(f"writeback target {self.name!r} (files) needs out_dir and source_roots")
            for spec in (self.out_dir, *self.source_roots):
                if spec.startswith("s3:") and not re.match(r"^s3://[^/]+(/|$)", spec):
                    raise ValueError(f"writeback target {self.name!r}: {spec!r} is not s3://bucket/prefix")
        if not self.fields:
            self.fields = dict(DEFAULT_FIELDS[self.type])
        if self.type == "wordpress" and self.mode == "suggest":
            self._suggestions_stay_off_the_site()
        return self

    def _tenants_fit_the_url(self) -> None:
        """One tenant's asset never lands on another's record: a URL shared by tenants must name the tenant."""
        if "{tenant}" in self.url and self.type != "webhook":
            raise ValueError(f"writeback target {self.name!r} ({self.type}): {{tenant}} is a webhook url "
                             "placeholder; a WordPress site serves the tenants its target names (tenants: [...])")
        shared = EVERY_TENANT in self.tenants or len(self.tenants) > 1
        if self.type == "webhook" and shared and "{tenant}" not in self.url:
            raise ValueError(f"writeback target {self.name!r} (webhook) serves {', '.join(self.tenants)} but its url "
                             "has no {tenant}, so two tenants' assets with the same id would be written to one "
                             "record; put {tenant} in the url (e.g. https://dam.example/{tenant}/assets/{asset_id}), "
                             "or configure one target per tenant")

    def _no_credentials_in_clear(self) -> None:
        sent = [name for name, secret in (("bearer_token", self.bearer_token), ("api_key", self.api_key),
                                          ("application_password", self.application_password)) if secret]
        if _has_userinfo(self.url):
            sent.append("a user:password in url")
        if sent and self.url.lower().startswith("http://") and not _loopback(self.url) \
                and not self.allow_insecure_http:
            raise SettingsFix(f"writeback target {self.name!r} ({self.type}): {', '.join(sent)} would be sent in "
                              f"clear over plain http:// to {urlsplit(self.url).hostname}; use an https:// url, or "
                              "set ", {"allow_insecure_http": True}, " on the target if that network is trusted")

    def _suggestions_stay_off_the_site(self) -> None:
        """A suggestion goes to post meta the editor sees, never to a field the site shows (docs/writeback.md)."""
        live = {ours: theirs for ours, theirs in self.fields.items() if not theirs.startswith("meta.")}
        if not live:
            return
        fix = {ours: SUGGESTED_META[ours] for ours in self.fields if ours in SUGGESTED_META}
        other = [ours for ours in live if ours not in SUGGESTED_META]
        raise SettingsFix(
            f"writeback target {self.name!r} (wordpress, mode suggest) maps "
            f"{', '.join(f'{o} -> {t}' for o, t in live.items())}: the media item's own fields, which the site "
            "shows at once, so unreviewed suggestions would go live; map them to the post meta the editor sees in "
            "the media modal: ", {"fields": fix},
            (f" and leave out {', '.join(other)} (no suggestion field for it)" if other else "")
            + " (deploy/wordpress/assetstream-suggestions.php), or use ", {"mode": "write"},
            " (approved records only)")

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(WRITABLE_FIELDS))
        if unknown:
            raise ValueError(f"cannot write {', '.join(unknown)} (one of {', '.join(WRITABLE_FIELDS)})")
        return v


class WritebackSettings(Section):
    """Write-back targets and the limits that keep a backfill from flooding them."""

    targets: list[TargetSettings] = Field(default_factory=list, description="the write-back targets (DAM, "
                                          "WordPress, file copies), each with the keys below; none = nothing is "
                                          "written back")
    rate_per_s: float | None = Field(None, gt=0, description="all targets together, per worker")
    state_index: str = Field("assetstream-writeback", description="the search-store index (settings.index "
                             "connection) holding per target and asset what was last written")

    def unserved(self, tenants: list[str]) -> list[str]:
        """Those of `tenants` no target serves (their records are skipped by every target)."""
        return [t for t in tenants if not any(target.serves(t) for target in self.targets)]

    @model_validator(mode="after")
    def _unique(self):
        names = [t.name for t in self.targets]
        if len(names) != len(set(names)):
            raise ValueError("writeback target names must be unique")
        return self
