"""What every `assetstream` command shares: the two consoles, loading the settings (a bad configuration is a
clear message and exit 2, not a traceback) and log setup."""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from app.settings import Settings
from domain.sources import shown
from streams.logs import configure_logging
from streams.settings import redact_url  # noqa: F401 - for the CLI modules

T = TypeVar("T")

console = Console(stderr=True)
if not console.is_terminal:  # pod logs, CI, a pipe: a message is one line however long (grep-able), not wrapped at 80
    console = Console(stderr=True, soft_wrap=True)
out = Console()
if not out.is_terminal:  # piped/CI output: wide enough for the results table to stay readable
    out = Console(width=160)


def _flag_shows_no_type(display_type_rich: Callable[..., Any]) -> Callable[..., Any]:
    """`--help` of every command: a flag (`--version`, `--json`, `--help`) takes no value, so it is listed without
    the value-type marker typer's Rich help puts on every option (`--version <bool>`, trial 32 F11); an option that
    takes a value keeps its marker (`--out <str>`), and a repeatable one the marker of one value (`--group <str>`,
    not `<list[str]>`: it is given once per value). typer's plain (non-Rich) help already leaves flags bare."""
    def display(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False):
            return None
        shown = display_type_rich(self, ctx)
        if shown and getattr(self, "multiple", False):
            shown = re.sub(r"list\[(.+)\]", r"\1", shown)
        return shown
    return display


if hasattr(typer.core.TyperOption, "display_type_rich"):  # typer >= 0.29 (constraints.txt pins it)
    typer.core.TyperOption.display_type_rich = _flag_shows_no_type(typer.core.TyperOption.display_type_rich)


_SURROGATE = re.compile("[\udc80-\udcff]")


def plain(value: Any, lines: bool = False) -> str:
    """Text from outside (a store's error, a dead letter's message, an asset id, a file name, an exception) for a
    Rich markup string, shown as it is: its `[...]` never taken for markup (trial 27 m1: the store's `failed to parse
    field [source_uri] of type [long]` printed as `field  of type `), and control and bidi characters as their escapes
    (domain.sources.shown: they cannot move the terminal's cursor or fake a line). `lines`: keep its line breaks
    (a stack trace, a multi-line error)."""
    text = str(value)
    if lines:
        return "\n".join(escape(shown(line)) for line in text.replace("\r\n", "\n").split("\n"))
    return escape(shown(text))


def as_text(value: Any) -> Text:
    """A table cell of text from outside (None: empty), as `plain` says, never markup."""
    return Text(shown("" if value is None else str(value)))


def print_json_out(data: Any) -> None:
    """JSON on stdout that is valid UTF-8 whatever the data holds: a file name that is not UTF-8 (its bytes kept
    as surrogate escapes by os.fsdecode, e.g. latin-1 `caf\\xe9.jpg`) is written as the JSON escape `\\udce9`,
    which Python's json.loads turns back into the same name (os.fsencode gives the original bytes); any other
    text as it is (rich's print_json wrote those bytes raw: not UTF-8, and `json.load` failed)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    out.print(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text), markup=False, highlight=False,
              emoji=False, soft_wrap=True)


def describe_settings_error(exc: Exception, origins: bool = True) -> str:
    """A configuration error as lines of `field (set in <file or variable>): problem`, a fix in that place's
    syntax (YAML, TOML or JSON: streams.settings.SettingsFix), never echoing the values given (they may be
    secrets: a password in kafka.extra, an API key). `origins`: the settings came from the environment and the
    settings file (False: a command's options changed them, and the file is not where to look)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from app.settings import env_not_json, setting_origin
    from streams.settings import SettingsFix

    if isinstance(exc, SettingsError) and "EnvSettingsSource" in str(exc):  # names only the section
        return "\n".join(env_not_json()) or str(exc)
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):  # ctx: the validator's own exception
        loc = tuple(p for p in err["loc"]  # minus pydantic's union-member tags
                    if str(p) != "str" and not str(p).startswith(("lax-or-strict", "function-")))
        origin = setting_origin(loc) if origins else None
        where = ".".join(map(str, loc)) or "settings"
        fix = (err.get("ctx") or {}).get("error")
        msg = f"Value error, {fix.render(origin[1] if origin else 'yaml')}" if isinstance(fix, SettingsFix) \
            else err["msg"]
        line = f"{where}{f' (set in {origin[0]})' if origin else ''}: {msg}"
        if err["type"] == "extra_forbidden":  # a misspelt key: name the closest one the section has
            near = Settings.near_keys(tuple(err["loc"]))
            if near:
                line += f" (did you mean {' or '.join(repr(k) for k in near)}?)"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # configuration errors should read as such, not as a traceback
        console.print("[red]configuration error:[/red]")
        console.print(describe_settings_error(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None


def broker_down(settings: Settings, what: str, exc: Exception | str, code: int,
                then: str = "run the same command again") -> None:
    """A broker that cannot be reached or does not acknowledge: what failed and what to check (where it is, and
    the security protocol / SASL a listener of another kind refuses), not a traceback. Never a secret."""
    kafka = settings.kafka
    protocol = kafka.security_protocol or "PLAINTEXT, the default"
    sasl = f", SASL mechanism {kafka.sasl_mechanism}" if kafka.sasl_mechanism else ""
    console.print(f"[red]error:[/red] {what}: {plain(exc)}", highlight=False)
    console.print(f"[dim]next:[/dim] check the broker at {kafka.bootstrap_servers} "
                  f"(ASSETSTREAM_KAFKA__BOOTSTRAP_SERVERS) is reachable from here and that its listener speaks "
                  f"kafka.security_protocol ({protocol}{sasl}; ASSETSTREAM_KAFKA__SECURITY_PROTOCOL, "
                  f"ASSETSTREAM_KAFKA__SASL_*), then {then}", highlight=False)
    raise typer.Exit(code)


def ask_store(settings: Settings, ask: Callable[[Settings], T]) -> T:
    """ask(settings), and once more in plain JSON (index.server_mode=serverless) when the store answers 406 to
    Elasticsearch's compatibility media type (OpenSearch, the osmem store of `assetstream run`, Elastic
    Serverless). Anything else the client raises goes to the caller."""
    from elasticsearch import ApiError

    try:
        return ask(settings)
    except ApiError as exc:
        if exc.status_code != 406 or settings.index.server_mode != "stack":
            raise
        return ask(settings.with_overrides(index={"server_mode": "serverless"}))


def store_down(settings: Settings, what: str, exc: Exception) -> None:
    """The search store refused or could not be reached (exit 1), with the settings that point at it."""
    console.print(f"[red]error:[/red] {what}: {plain(exc)}", highlight=False)
    hint = f"check the store at {redact_url(settings.index.url)} (ASSETSTREAM_INDEX__URL)"
    if getattr(exc, "status_code", None) == 406:  # OpenSearch / osmem refuse the ES compatibility media type
        hint += "; an OpenSearch-API store needs ASSETSTREAM_INDEX__SERVER_MODE=serverless"
    console.print(f"[dim]next:[/dim] {hint}", highlight=False)
    raise typer.Exit(1)


def setup_logging(level: str, levels: Mapping[str, str] | None = None) -> None:
    """Logs on stderr at `level` (settings.log_level), with per-logger levels (settings.log_levels)."""
    configure_logging(level, levels)


def loopback_only(host: str) -> bool:
    """Whether binding `host` serves this machine only (a name is resolved: `localhost`, a hosts-file alias)."""
    import ipaddress
    import socket

    try:
        return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                   for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False
