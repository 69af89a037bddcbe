"""Regenerate the CRD JSON schemas in this directory (maintainers only; tests just read the .json files).

The schemas come from the cloudcoil model packages, which are generated from the upstream CRDs
(KEDA keda.sh/v1alpha1, prometheus-operator monitoring.coreos.com/v1). They are made strict the way
`kubectl apply --validate=strict` treats a structural CRD schema: every object that lists its properties gets
`additionalProperties: false`, so a misspelt field is an error instead of being silently pruned.

    pip install cloudcoil-models-keda cloudcoil-models-prometheus-operator
    python deploy/schemas/generate.py
"""
from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _strict(node):
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for key in ("title", "description"):
            node.pop(key, None) if isinstance(node.get(key), str) else None
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def main() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

    sources = {
        ("keda.sh/v1alpha1", "ScaledObject"): (ScaledObject, "cloudcoil-models-keda"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"): (TriggerAuthentication, "cloudcoil-models-keda"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"): (ServiceMonitor, "cloudcoil-models-prometheus-operator"),
        ("monitoring.coreos.com/v1", "PrometheusRule"): (PrometheusRule, "cloudcoil-models-prometheus-operator"),
    }
    for (api_version, kind), (model, dist) in sources.items():
        schema = _strict(model.model_json_schema(by_alias=True, mode="validation"))
        schema["properties"]["apiVersion"] = {"const": api_version}
        schema["properties"]["kind"] = {"const": kind}
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["x-source"] = f"{dist}=={version(dist)} ({model.__module__}.{model.__name__})"
        out = HERE / f"{api_version.split('/')[0]}_{kind.lower()}.json"
        out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out.name}")


if __name__ == "__main__":
    main()
