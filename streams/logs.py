"""Log set-up shared by every assetstream process (a worker, its `runner.processes` children, the CLI's servers).

Some libraries log every request at INFO: `elastic_transport` one line per HTTP call to the search store (329 of
an enrich worker's 340 log lines in a user's trial). They start at WARNING unless the log level is DEBUG; the
`log_levels` setting sets any logger's level (`ASSETSTREAM_LOG_LEVELS='{"elastic_transport": "INFO"}'`)."""
from __future__ import annotations

import logging
import re
import sys
from typing import Mapping

QUIET_BY_DEFAULT = {"elastic_transport": "WARNING"}
"""Loggers that start at this level unless the root level is DEBUG or `log_levels` names them."""

FORMAT = "%(asctime)s %(levelname)s %(name)s{suffix}: %(message)s"


HIDDEN = "**********"
URL_CREDENTIALS = re.compile(r"(?i)((?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:(?:\\?/){2}[^\s/@:\"']*:)([^\s/@\"']+)(?=@)")
"""The password of a URL's userinfo (group 2; group 1 up to it), also JSON-escaped (`https:\\/\\/user:pw@`). The
scheme starts where a run of scheme characters starts (linear time on long runs)."""


class HideUrlCredentials(logging.Filter):
    """`https://user:password@host/` -> `https://user:**********@host/` in a record's message: httpx logs each
    request's URL at INFO, and a target or source URL may carry its credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message:
            hidden = URL_CREDENTIALS.sub(rf"\1{HIDDEN}", message)
            if hidden != message:
                record.msg, record.args = hidden, ()
        return True


def hide_url_credentials(*loggers: str) -> None:
    """Put HideUrlCredentials on these loggers (once each)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideUrlCredentials) for f in logger.filters):
            logger.addFilter(HideUrlCredentials())


def configure_logging(level: str, levels: Mapping[str, str] | None = None, suffix: str = "") -> None:
    """The root logger at `level` on stderr (basicConfig: a process that configured logging keeps its handlers),
    the chatty libraries quieter (QUIET_BY_DEFAULT) and every logger `levels` names at its level."""
    root = logging.getLevelName(level.upper())
    root = root if isinstance(root, int) else logging.INFO
    logging.basicConfig(level=root, format=FORMAT.format(suffix=suffix), stream=sys.stderr)
    quiet = {} if root <= logging.DEBUG else QUIET_BY_DEFAULT
    for name, name_level in {**quiet, **(levels or {})}.items():
        logging.getLogger(name).setLevel(name_level.upper())
    hide_url_credentials("httpx")
