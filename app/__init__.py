"""The application on top of the runtime and the stages: the composition root (`app.settings.Settings`, the
stage registry in `app.cli`), the CLI, the embedded run, the ops tools and the faust KPI app."""
