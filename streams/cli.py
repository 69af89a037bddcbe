"""The `assetstream` command line."""
from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Any, Optional

import typer
from rich.console import Console

from streams.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="assetstream: a Kafka consumer fleet that turns raw image-asset events into validated, "
                       "searchable, provenance-stamped DAM metadata.")
topics_app = typer.Typer(no_args_is_help=True, help="Provision Kafka topics.")
app.add_typer(topics_app, name="topics")
console = Console(stderr=True)
out = Console()

STAGES = {
    "preprocess": "consumers.preprocess.stage:PreprocessStage",
    "enrich": "consumers.enrich.stage:EnrichStage",
    "validate": "consumers.validate.stage:ValidateStage",
    "index": "consumers.index.sink:IndexSink",
}


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # configuration errors should read as such, not as a traceback
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def stage_class(name: str) -> Any:
    """A built-in stage name, or 'package.module:Class' for your own stage."""
    target = STAGES.get(name, name)
    if ":" not in target:
        raise typer.BadParameter(f"unknown stage {name!r}: use one of {', '.join(STAGES)} or module:Class")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


@app.command()
def worker(stage: str = typer.Argument(..., help="preprocess | enrich | validate | index | module:Class"),
           metrics_port: Optional[int] = typer.Option(None, help="override runner.metrics_port (0 = any free)")):
    """Run one consumer group member until SIGTERM (the unit Kubernetes scales)."""
    from streams.runner import StageRunner

    settings = load_settings()
    setup_logging(settings.log_level)
    if metrics_port is not None:
        settings = settings.with_overrides(runner={"metrics_port": metrics_port})
    runner = StageRunner(stage_class(stage)(settings), settings, install_signal_handlers=True)
    runner.run()


@topics_app.command("create")
def topics_create(json_out: bool = typer.Option(False, "--json", help="machine-readable output")):
    """Create all assetstream topics that do not exist yet (idempotent)."""
    from streams.topics import create_topics

    settings = load_settings()
    result = create_topics(settings)
    if json_out:
        out.print_json(json.dumps(result))
    else:
        for topic, state in result.items():
            out.print(f"{state:8} {topic}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
