"""Per-area settings sections. Each file owns one section; `streams.settings.Settings` composes them."""
