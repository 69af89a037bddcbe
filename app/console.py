"""What every `assetstream` command shares: the two consoles, loading the settings (a bad configuration is a
clear message and exit 2, not a traceback) and log setup."""
from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from app.settings import Settings

console = Console(stderr=True)
out = Console()
if not out.is_terminal:  # piped/CI output: wide enough for the results table to stay readable
    out = Console(width=160)


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # configuration errors should read as such, not as a traceback
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
