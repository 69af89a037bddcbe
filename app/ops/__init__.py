"""Operator tooling: publish from the command line, the DAM webhook ingest server, backfills, dead letters.
CLI commands live in app.ops.cli (mounted with `register(app)`); see docs/operations.md."""
