"""WordPress: the media item's alt text, caption and description through the REST API
(`POST <site>/wp-json/wp/v2/media/<id>`, Basic auth with an application password).

    - name: blog
      type: wordpress
      url: https://blog.example            # the site; the REST root is <url>/wp-json
      username: assetstream
      application_password: "abcd efgh ..."
      fields: {alt_text: alt_text, caption: caption, summary: description}

"Suggest only": map our fields to post meta instead (`fields: {alt_text: meta.assetstream_suggested_alt_text}`)
with `mode: suggest`; the site registers those meta keys for the REST API (deploy/wordpress/, a must-use plugin).

A media item's title that is still the one WordPress gave it on upload (the file's name) counts as never
written by a person: a `title` mapping replaces it, `protect_unknown` keeps any other.

Caption, description and title are HTML on the site (post_excerpt, post_content, post_title; the REST API stores
them raw, and for a user with `unfiltered_html` nothing filters them): what we send there is text, with `<`, `>`,
`&` and a shortcode's `[` as references (as_html_text), so it shows as written and never as markup; in the form
WordPress stores it whatever the role (stored_form: no control characters, which kses drops; a title trimmed, as
WordPress trims every title it saves). The alt text
is post meta that WordPress escapes on output, never escaped by us; the REST API stores it through
sanitize_text_field (tags removed, whitespace collapsed) and then unslashes it (a backslash lost), so we send it
in that form (wp_text_field, no backslashes) and what we wrote is what we read back (not a person's edit).

Which media item: the asset event's attribute `media_id_attribute` (e.g. the DAM connector puts
`wordpress_media_id` there), else the media item whose `source_url` is the asset's source URI (an image or a video;
a search by file name, page by page). Record data only ever picks a numeric id on the configured site, never a URL.

A user without unfiltered_html has every save of a media item re-filtered by kses, the title, caption and
description we do not send too: an item where that would change a person's text is left alone (a dead letter
`kses_would_change`, `_refuse_refiltering`).
"""
from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import urlparse

from consumers.writeback.http import HttpTarget
from consumers.writeback.plan import MISSING, get_path, nest
from domain.records import asset_of, document_id
from streams.errors import PermanentError


HTML_FIELDS = frozenset({"caption", "description", "title"})
SEARCH_PAGE, SEARCH_PAGES = 100, 20
"""A media search by file stem reads pages of 100 items, at most 20 of them (2,000 items with that stem)."""
_AS_TEXT = re.compile(r"[<>]|&#?|\[(?=[\[/A-Za-z])")
_REFERENCE = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "&#": "&#038;#", "[": "&#091;"}


def as_html_text(value: Any) -> Any:
    """Text for a field WordPress renders as HTML (caption, description, title), so it shows as written, never as
    markup: `<`, `>` and `&` become references, and a `[` that would open a shortcode (`[gallery`, `[/x`, `[[`)
    `&#091;`. Quotes and the rest stay (the field is text, not an attribute). In the form WordPress's own HTML
    filter (kses, for a user without unfiltered_html) stores it: kses turns a bare `&` into `&amp;` and `&#91;`
    into `&#091;`, so anything else would read back as a person's edit; an `&` before `#` goes as `&#038;`, which
    kses keeps (`&amp;#39;` it stores as `&#039;`: code review 16)."""
    if isinstance(value, list):  # a list mapped to a text field is joined: escape the text it becomes
        value = ", ".join(str(v) for v in value)
    return _AS_TEXT.sub(lambda m: _REFERENCE[m.group()], value) if isinstance(value, str) else value


_KSES_DROPS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
"""The control characters kses (wp_kses_no_null) removes from what a user without unfiltered_html saves."""
PHP_TRIM = " \t\n\r\x00\x0b"
"""What PHP's trim() removes at both ends (no-break and other Unicode spaces stay)."""


def stored_form(field: str, value: Any) -> Any:
    """What we send WordPress for one of its fields, in the form it stores it whatever the user's role, so what we
    wrote reads back the same (not a person's edit): text for an HTML field (`caption` and `caption.raw` alike: the
    REST API takes either form) without the control characters kses drops, and a title trimmed as every save trims
    it (title_save_pre); sanitize_text_field's form for the alt text, without backslashes and NULs (the REST API
    stores it unslashed: `¯\\_(ツ)_/¯` read back as `¯_(ツ)_/¯`); post meta as it is."""
    top = field.split(".")[0]
    if top == "alt_text":
        return wp_text_field(value.replace("\\", "").replace("\x00", "") if isinstance(value, str) else value)
    if top not in HTML_FIELDS:
        return value
    if isinstance(value, list):  # joined before the escaping (as_html_text)
        value = ", ".join(str(v) for v in value)
    if not isinstance(value, str):
        return value
    text = as_html_text(_KSES_DROPS.sub("", value))  # dropped first: "[\x01gallery" must not become a shortcode
    return text.strip(PHP_TRIM) if top == "title" else text


def wp_text_field(value: Any) -> Any:
    """What WordPress's sanitize_text_field (the REST API's alt_text) makes of a text: a `<` opening no tag as
    `&lt;`, <script>/<style> elements and tags removed, whitespace runs one space, trimmed, %xx octets removed."""
    if not isinstance(value, str):
        return value
    text = value
    if "<" in text:
        text = re.sub(r"<[^>]*?(?:(?=<)|>|$)", lambda m: m.group() if ">" in m.group() else _esc_html(m.group()),
                      text)
        text = re.sub(r"<(script|style)[^>]*?>.*?</\1>", "", text, flags=re.IGNORECASE | re.DOTALL)
        text = re.sub(r"<(?!\s)[^>]*>", "", text).strip()  # PHP strip_tags: "< b" opens no tag
    text = re.sub(r"[\r\n\t ]+", " ", text).strip()
    octets = re.sub(r"%[a-fA-F0-9]{2}", "", text)
    while octets != text:
        text, octets = octets, re.sub(r"%[a-fA-F0-9]{2}", "", octets)
    return re.sub(r" +", " ", text).strip() if text != value and "%" in value else text


def _esc_html(text: str) -> str:
    text = re.sub(r"&(?!#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)", "&amp;", text)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#039;")


UNFILTERED_HTML = ("wp:action-unfiltered-html", "https://api.w.org/action-unfiltered-html")
"""The link a media item read with context=edit has when the user may save unfiltered HTML (current_user_can,
so DISALLOW_UNFILTERED_HTML and multisite count)."""

_KSES_ENTITY_NAMES = frozenset("""
nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn acute micro para
middot cedil ordm raquo iquest Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml
Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml
Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute
icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn
yuml quot amp lt gt apos OElig oelig Scaron scaron Yuml circ tilde ensp emsp thinsp zwnj zwj lrm rlm ndash
mdash lsquo rsquo sbquo ldquo rdquo bdquo dagger Dagger permil lsaquo rsaquo euro fnof Alpha Beta Gamma Delta
Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho Sigma Tau Upsilon Phi Chi Psi Omega alpha
beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigmaf sigma tau upsilon
phi chi psi omega thetasym upsih piv bull hellip prime Prime oline frasl weierp image real trade alefsym larr
uarr rarr darr harr crarr lArr uArr rArr dArr hArr forall part exist empty nabla isin notin ni prod sum minus
lowast radic prop infin ang and or cap cup int sim cong asymp ne equiv le ge sub sup nsub sube supe oplus
otimes perp sdot lceil rceil lfloor rfloor lang rang loz spades clubs hearts diams sup1 sup2 sup3 frac14
frac12 frac34 there4""".split())
"""kses's $allowedentitynames (wp-includes/kses.php, WordPress 6.1): the named references it keeps."""


def _valid_unicode(i: int) -> bool:
    return i in (0x9, 0xA, 0xD) or 0x20 <= i <= 0xD7FF or 0xE000 <= i <= 0xFFFD or 0x10000 <= i <= 0x10FFFF


def _kses_entities(text: str) -> str:
    """wp_kses_normalize_entities: every `&` a reference kses keeps (in its form), or `&amp;`."""
    text = text.replace("&", "&amp;")
    text = re.sub(r"&amp;([A-Za-z]{2,8}[0-9]{0,2});",
                  lambda m: f"&{m[1]};" if m[1] in _KSES_ENTITY_NAMES else m.group(), text)

    def number(m: re.Match) -> str:
        if m[1] == "0":  # PHP's empty("0")
            return ""
        return f"&#{m[1].lstrip('0').rjust(3, '0')};" if _valid_unicode(int(m[1])) else f"&amp;#{m[1]};"

    def hexa(m: re.Match) -> str:
        if m[1] == "0":
            return ""
        return f"&#x{m[1].lstrip('0')};" if _valid_unicode(int(m[1], 16)) else f"&amp;#x{m[1]};"

    text = re.sub(r"&amp;#(0*[0-9]{1,7});", number, text)
    return re.sub(r"&amp;#[Xx](0*[0-9A-Fa-f]{1,6});", hexa, text)


def survives_kses(field: str, text: Any) -> bool:
    """Whether WordPress saves this title, caption or description unchanged for a user without unfiltered_html:
    every save of the media item, even one that sends only its alt text or post meta, runs the stored
    post_title through wp_filter_kses and trim, and post_excerpt and post_content through wp_filter_post_kses
    (kses_init_filters). Unchanged means: no `<` or `>` (kses parses, drops or escapes them: `<3` became
    `&lt;3`, an iframe vanished), none of the control characters it drops, and a title without spaces at its
    ends. Its references are normalised, which is not a change a reader sees: a bare `&` is stored `&amp;` and
    `&#91;` `&#091;` (`_kses_entities`), which every page shows as before; refusing those would leave alone
    every item whose title says "Q&A" or "R&D" (code review 18 F4), so they count as unchanged."""
    if not isinstance(text, str) or not text:
        return True
    if "<" in text or ">" in text or _KSES_DROPS.search(text):
        return False
    return field != "title" or text == text.strip(PHP_TRIM)


class WordPressTarget(HttpTarget):

    def __init__(self, cfg, global_pacer, client=None):
        super().__init__(cfg, global_pacer, client)
        self.base = cfg.url.rstrip("/") + "/wp-json/wp/v2/media"
        pw = cfg.application_password.get_secret_value() if cfg.application_password else ""
        self.auth = (cfg.username or "", pw)
        self._ids: dict[str, int] = {}  # by tenant-scoped id: two tenants' "a1" are two media items
        self._docs: dict[str, dict[str, Any]] = {}  # the media item read, until the record's release()

    def media_id(self, value: dict[str, Any]) -> int:
        asset = asset_of(value)
        key = document_id(value)
        if key in self._ids:
            return self._ids[key]
        given = (asset.get("attributes") or {}).get(self.cfg.media_id_attribute)
        if given is not None:
            if not re.fullmatch(r"[0-9]{1,20}", str(given)):  # ASCII digits only: not "²", not a full-width "７"
                raise PermanentError(f"{self.name}: attribute {self.cfg.media_id_attribute}={given!r} is not a "
                                     "media id (ASCII digits)", reason="bad_media_id", details={"target": self.name})
            media = int(given)
        else:
            media = self._lookup(asset.get("source_uri") or "")
        self._ids[key] = media
        return media

    def _lookup(self, source: str) -> int:
        """The media item whose `source_url` is `source`, any media type (an image, a video: trial 35 F3), found
        by searching its file stem, page by page up to SEARCH_PAGES pages (a common stem in a big library)."""
        stem = posixpath.splitext(posixpath.basename(urlparse(source).path))[0]
        if not stem:
            raise PermanentError(f"{self.name}: the asset has no media id attribute and no source URI",
                                 reason="no_media_item", details={"target": self.name})
        if urlparse(source).scheme == "file":  # trial 35 F9: `assetstream run` over the uploads folder
            raise PermanentError(
                f"{self.name}: the asset is a local file ({source}), which is no media item's URL: publish the media "
                f"item's upload URL instead ({self.cfg.url.rstrip('/')}/wp-content/uploads/…: `assetstream publish "
                f"URL`), or set the asset's {self.cfg.media_id_attribute} attribute (docs/writeback.md)",
                reason="no_media_item", details={"target": self.name, "source_uri": source})
        seen, pages, page = 0, 1, 1
        while page <= min(pages, SEARCH_PAGES):
            resp = self.request("GET", self.base, auth=self.auth,
                                params={"search": stem, "per_page": SEARCH_PAGE, "page": page, "context": "edit"})
            items = self.json_of(resp) or []
            for item in items:
                if item.get("source_url") == source:
                    return int(item["id"])
            seen += len(items)
            try:
                pages = int(resp.headers.get("x-wp-totalpages") or 1)
            except ValueError:
                pages = 1
            page += 1
        more = f", the first {seen} of them read" if pages > SEARCH_PAGES else ""
        raise PermanentError(f"{self.name}: no media item has the source URL {source} (searched the media library "
                             f"for {stem!r}: {seen} item(s){more}); publish the media item's upload URL, or set "
                             f"the asset's {self.cfg.media_id_attribute} attribute", reason="no_media_item",
                             details={"target": self.name, "source_uri": source})

    def as_stored(self, wanted: dict[str, Any]) -> dict[str, Any]:
        return {theirs: stored_form(theirs, v) for theirs, v in wanted.items()}

    def _item(self, value: dict[str, Any]) -> dict[str, Any]:
        resp = self.request("GET", f"{self.base}/{self.media_id(value)}", auth=self.auth,
                            params={"context": "edit"})
        return self.json_of(resp)

    def read(self, value: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        doc = self._docs[document_id(value)] = self._item(value)  # for write: the fields we do not send
        current = {}
        for theirs in self.cfg.fields.values():
            v = get_path(doc, theirs)
            if isinstance(v, dict) and "raw" in v:  # caption, description: {raw, rendered}
                v = v["raw"]
            if v is not MISSING and not (theirs == "title" and _automatic_title(v, doc)):
                current[theirs] = v
        return current, None

    def release(self, value: dict[str, Any]) -> None:
        self._docs.pop(document_id(value), None)

    def write(self, value: dict[str, Any], fields: dict[str, Any], etag: str | None,
              previous: dict[str, Any] | None = None) -> str | None:
        media = self.media_id(value)
        self._refuse_refiltering(media, self._docs.get(document_id(value)) or self._item(value), fields)
        # a field of ours cleared is "" (the REST API refuses null for its string fields)
        body = nest({k: ", ".join(v) if isinstance(v, list) else ("" if v is None else v) for k, v in fields.items()})
        self.request("POST", f"{self.base}/{media}", auth=self.auth, json=body)
        return None

    def _refuse_refiltering(self, media: int, doc: dict[str, Any], fields: dict[str, Any]) -> None:
        """Trial 35 F1: for a user without unfiltered_html WordPress re-filters the title, caption and description
        on every save of the media item, the ones we do not send too (suggest mode sends only post meta): a
        person's `Balloons <3 party` became `Balloons &lt;3 party`, an editor's iframe vanished. When one of
        them would not survive that unchanged, nothing is sent: a dead letter (`kses_would_change`) names the
        fields and the fix. Never over a person."""
        if any(rel in (doc.get("_links") or {}) for rel in UNFILTERED_HTML):
            return  # nothing filters what this user saves
        sent = {k.split(".")[0] for k in fields}
        changed = []
        for name in ("title", "caption", "description"):
            raw = doc.get(name)
            raw = raw.get("raw") if isinstance(raw, dict) else raw
            if name not in sent and not survives_kses(name, raw):
                changed.append(name)
        if changed:
            raise PermanentError(
                f"{self.name}: media item {media} left alone: WordPress may rewrite its {', '.join(changed)} "
                f"(a person's text with markup, `<` or `>`, which kses re-filters: this check does not tell the tags "
                f"it keeps from those it drops) on any save by {self.cfg.username}, who "
                "lacks unfiltered_html (kses re-filters the fields we do not send); fix: edit that text in "
                "WordPress, or give the user unfiltered_html (docs/writeback.md), then `assetstream dlq replay`",
                reason="kses_would_change",
                details={"target": self.name, "media_id": str(media), "fields": ", ".join(changed)})


def _name(text: str) -> str:
    return " ".join(re.split(r"[\s_-]+", text.lower())).strip()


def _automatic_title(title: Any, doc: dict[str, Any]) -> bool:
    """Whether a media item's title is the one WordPress gave it on upload: the file's name without its extension
    (`Red Shoe.jpg` -> "Red Shoe", stored as Red-Shoe.jpg, Red-Shoe-1.jpg for a second upload, or
    Red-Shoe-scaled.jpg for a large image). Nobody typed it, so `protect_unknown` does not keep it from ours."""
    if not isinstance(title, str) or not title.strip():
        return False
    files = [posixpath.basename(urlparse(doc.get("source_url") or "").path),
             (doc.get("media_details") or {}).get("original_image") or ""]
    names = set()
    for f in filter(None, files):
        stem = posixpath.splitext(f)[0]
        names |= {stem, re.sub(r"-(scaled|\d+)$", "", stem)}
    return _name(title) in {_name(n) for n in names}
