"""Write deploy/k8s/components/monitoring/prometheusrule.yaml from deploy/prometheus/rules.yml.

rules.yml is the source of truth (promtool checks and unit-tests it); the PrometheusRule carries the same groups
for prometheus-operator. tests/test_deploy_prometheus.py fails when the two disagree.

    python deploy/prometheus/sync_prometheusrule.py
"""
from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yml"
TARGET = HERE.parent / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
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


def main() -> None:
    TARGET.write_text(render())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
