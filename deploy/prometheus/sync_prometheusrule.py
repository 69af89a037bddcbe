"""Write deploy/k8s/components/monitoring/prometheusrule.yaml from deploy/prometheus/rules.yml.

rules.yml is the source of truth (promtool checks and unit-tests it); the PrometheusRule carries the same groups
for prometheus-operator. tests/test_deploy_prometheus.py fails when the two disagree.

Each alert's `runbook_url` annotation is a full URL, clickable in Alertmanager and Grafana: the runbook base URL
(where your copy of the repository's docs is browsable) + `docs/monitoring.md#<alert>`. The base is rewritten in
rules.yml and rules_test.yml (the promtool tests expect the annotation) before the PrometheusRule is written:

    python deploy/prometheus/sync_prometheusrule.py [--runbook-base-url https://git.example.com/dam/assetstream/-/blob/main/]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yml"
RULES_TEST = HERE / "rules_test.yml"
TARGET = HERE.parent / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
#: where docs/ is browsable: the repository's docs path form the tests check (…/docs/monitoring.md#<alert>)
DEFAULT_RUNBOOK_BASE_URL = "https://github.com/example/assetstream/blob/main/"
_RUNBOOK = re.compile(r"""(?P<key>runbook(?:_url)?):(?P<sp>\s*)['"]?[^\s'"]*?(?P<doc>docs/monitoring\.md#[\w-]+)['"]?""")


def check_base_url(base: str) -> str:
    if not re.fullmatch(r"https?://[^\s#?]+", base):
        raise ValueError(f"--runbook-base-url {base!r}: want an http(s) URL under which docs/monitoring.md is "
                         "browsable, e.g. https://github.com/<owner>/assetstream/blob/main/")
    return base.rstrip("/") + "/"


def rebase_runbooks(text: str, base: str) -> str:
    """Every runbook annotation of a rules or rules-test file as `runbook_url: <base>docs/monitoring.md#…`."""
    base = check_base_url(base)
    return _RUNBOOK.sub(lambda m: f"runbook_url:{m['sp']}{base}{m['doc']}", text)
HEADER = ("# GENERATED from deploy/prometheus/rules.yml by deploy/prometheus/sync_prometheusrule.py: edit rules.yml.\n"
          "# Your Prometheus' ruleSelector may require a label here (e.g. release: kube-prometheus-stack).\n")


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, data: _Literal):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _multiline_as_blocks(node):
    if isinstance(node, dict):
        return {k: _multiline_as_blocks(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_multiline_as_blocks(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return _Literal(node)
    return node


def prometheus_rule(rules: dict) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "assetstream", "labels": {"app.kubernetes.io/name": "assetstream"}},
        "spec": {"groups": rules["groups"]},
    }


def render(rules_path: Path = RULES) -> str:
    rules = yaml.safe_load(rules_path.read_text())
    body = yaml.dump(_multiline_as_blocks(prometheus_rule(rules)), Dumper=_Dumper, sort_keys=False, width=120)
    return HEADER + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runbook-base-url", default=DEFAULT_RUNBOOK_BASE_URL,
                        help=f"where docs/ is browsable (default {DEFAULT_RUNBOOK_BASE_URL})")
    args = parser.parse_args(argv)
    try:
        for path in (RULES, RULES_TEST):
            path.write_text(rebase_runbooks(path.read_text(), args.runbook_base_url))
    except ValueError as exc:
        parser.error(str(exc))
    TARGET.write_text(render())
    print(f"wrote {TARGET} (runbook URLs under {check_base_url(args.runbook_base_url)})")


if __name__ == "__main__":
    main()
