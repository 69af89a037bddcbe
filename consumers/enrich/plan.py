"""The enrich plan: which tasks a configuration runs, with which model and which prompt, and what provenance
that produces. The stage runs it; `backfill --only-stale` compares indexed provenance with it. One place, so a
change to the stage cannot silently disagree with the staleness check.

    plan = EnrichPlan.from_settings(settings)
    plan.tasks                      # {"tagging": PlannedTask, "alt_text": ..., "rights": ..., ["verify": ...]}
    plan.render(plan.tasks["tagging"], preprocessed)
    plan.stale_tasks(doc["provenance"], model_versions)   # {"alt_text": "prompt 1a2b... != 3c4d..."}

A task's identity is (prompt hash, provider, model, model version). The prompt hash covers the system part
rendered with the vocabulary, the user template, the output schema and the call parameters, never the record,
so it is known ahead. The model is the configured model id (what a provider runs exactly, e.g. a dated
snapshot or the local weights' package versions, is its model version).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from consumers.enrich.calling import ModelSpec, model_for
from consumers.enrich.prompts import PromptTemplate, RenderedPrompt, load_prompt, render
from consumers.enrich.settings import EnrichSettings
from domain.taxonomy import load_taxonomy

@dataclass(frozen=True)
class PlannedTask:
    name: str  # tagging | alt_text | rights | verify
    prompt: PromptTemplate  # verify re-runs the tagging prompt with another model
    spec: ModelSpec
    max_tokens: int


class EnrichPlan:
    def __init__(self, enrich: EnrichSettings, taxonomy_path: str | None = None):
        self.enrich = enrich
        tax = load_taxonomy(path=taxonomy_path)
        self.taxonomy_version = str(tax.version)
        self.vocabulary = [{"tag": t["tag"], "facet": t["facet"], "label": t["label"],
                            "synonyms": list(t.get("synonyms") or [])} for t in tax.vocabulary()]
        self.parents = {t["tag"]: tax.ancestors(t["tag"]) for t in tax.vocabulary()}
        """each tag's ancestors, nearest first (for the local provider: a child implies its parents); not part of the
        rendered vocabulary, so the prompts and their hashes are unchanged"""
        where = {"prompts_dir": Path(enrich.prompts_dir)} if enrich.prompts_dir else {}
        templates = {t: load_prompt(t, enrich.prompt_versions.get(t), **where) for t in enrich.tasks}
        self.tasks: dict[str, PlannedTask] = {
            t: PlannedTask(t, templates[t], model_for(t, enrich), enrich.max_tokens.get(t, 1024))
            for t in enrich.tasks}
        if enrich.verifier and "tagging" in templates:
            self.tasks["verify"] = PlannedTask("verify", templates["tagging"],
                                               ModelSpec.parse(enrich.verifier, enrich.provider),
                                               enrich.max_tokens.get("tagging", 1024))

    @classmethod
    def from_settings(cls, settings: Any) -> "EnrichPlan":
        return cls(settings.enrich, settings.validate_.taxonomy_path)

    @property
    def specs(self) -> list[ModelSpec]:
        return [t.spec for t in self.tasks.values()]

    def render(self, task: PlannedTask, preprocessed: dict[str, Any]) -> RenderedPrompt:
        return render(task.prompt, preprocessed, vocabulary=self.vocabulary, taxonomy_version=self.taxonomy_version,
                      provider=task.spec.provider, model=task.spec.model, max_tokens=task.max_tokens)

    def identity(self, name: str, model_version: str | None = None) -> dict[str, Any]:
        """The provenance fields a run of task `name` records (model_version None: not known ahead)."""
        task = self.tasks[name]
        return {"prompt_hash": self.render(task, {}).hash, "provider": task.spec.provider,
                "model": task.spec.model, "model_version": model_version}

    def identities(self, model_versions: Mapping[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        versions = model_versions or {}
        return {name: self.identity(name, versions.get(name)) for name in self.tasks}

    def stale_tasks(self, provenance: list[dict[str, Any]] | None,
                    model_versions: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """task -> why the indexed provenance differs from this plan (empty: everything is current)."""
        return stale_reasons(provenance, self.identities(model_versions))


def stale_reasons(provenance: list[dict[str, Any]] | None, current: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """task -> reason, comparing provenance entries (by task; dedupe entries ignored) with task identities."""
    prov = {p.get("task"): p for p in provenance or [] if p.get("task") not in (None, "dedupe")}
    reasons: dict[str, str] = {}
    for task, want in current.items():
        p = prov.get(task)
        if p is None:
            reasons[task] = "not enriched"
        elif p.get("prompt_hash") != want["prompt_hash"]:
            reasons[task] = f"prompt {str(p.get('prompt_hash'))[:12]} != {want['prompt_hash'][:12]}"
        elif p.get("provider") != want["provider"] or p.get("model") != want["model"]:
            reasons[task] = f"model {p.get('provider')}:{p.get('model')} != {want['provider']}:{want['model']}"
        elif want.get("model_version") is not None and p.get("model_version") != want["model_version"]:
            reasons[task] = f"model version {p.get('model_version')} != {want['model_version']}"
    return reasons
