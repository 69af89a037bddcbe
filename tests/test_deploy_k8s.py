"""deploy/k8s: render every kustomization offline (kubectl's built-in kustomize), validate built-in objects strictly
against the Kubernetes schemas (kubernetes-validate) and KEDA / prometheus-operator objects against the CRD schemas
in deploy/schemas, and check the invariants the workers rely on. Each check is also run on a broken copy of the
manifests to show that it catches the breakage."""
from __future__ import annotations

from typing import Callable

import pytest

from tests import deploy_support as ds

ALL = ds.KUSTOMIZATIONS
SCALED = ("overlays/example", "overlays/example-hpa")


@pytest.fixture(params=ALL)
def kustomization(request) -> str:
    return request.param


def test_renders_expected_objects(kustomization):
    docs = ds.rendered(kustomization)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "PodDisruptionBudget", "Service", "ConfigMap", "Job", "ServiceAccount"} <= kinds
    assert {f"assetstream-{s}" for s in ds.STAGES if s not in ds.OPTIONAL_STAGES} <= set(ds.by_name(docs, "Deployment"))


def test_builtin_objects_match_kubernetes_schema_strictly(kustomization):
    assert ds.builtin_schema_problems(ds.rendered(kustomization)) == []


def test_crd_objects_match_crd_schemas(kustomization):
    docs = ds.rendered(kustomization)
    assert ds.crd_schema_problems(docs) == []


def test_an_object_of_unknown_kind_is_not_let_through():
    """A kind that is neither built in nor has a CRD schema in deploy/schemas is a problem, not a pass."""
    docs = ds.rendered("base") + [{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                                   "metadata": {"name": "x"}, "spec": {}}]
    assert any("Certificate/x: no schema" in p for p in ds.builtin_schema_problems(docs))


def test_settings_load_in_every_pod(kustomization, tmp_path):
    assert ds.settings_problems(ds.rendered(kustomization), tmp_path) == []


def test_workers(kustomization, tmp_path):
    assert ds.worker_problems(ds.rendered(kustomization), tmp_path) == []


def test_no_secret_values(kustomization):
    assert ds.secret_problems(ds.rendered(kustomization)) == []


def test_other_roles(kustomization):
    assert ds.role_problems(ds.rendered(kustomization)) == []


def test_every_setting_a_command_needs_is_supplied(kustomization, tmp_path):
    """Trial 17: nothing supplied ops.webhook_secret, so both ingest replicas exited 2 ("no webhook secret") on a
    deploy that followed docs/deploy.md; the example's Claude key was optional, so a Secret without it would
    crash-loop enrich. Each such setting now comes from a required Secret key."""
    assert ds.required_setting_problems(ds.rendered(kustomization), tmp_path) == []


def test_every_stage_that_uses_the_store_gets_its_credentials(kustomization):
    """Trial 17: enrich reads the store (model-result cache, duplicate and review lookups) but got no index
    credentials; against the example's API-key Elasticsearch every lookup failed and counted as a miss."""
    assert {"enrich", "index", "review", "writeback"} <= ds.store_stages()
    assert ds.store_credential_problems(ds.rendered(kustomization)) == []


def test_unauthenticated_ports_are_reachable_only_from_monitoring(kustomization):
    """Trial 2: the workers' /metrics and the KPI app's /kpis (cost, editors' edit rates; web_host 0.0.0.0 in the
    config) answer without auth, and no NetworkPolicy limited who could reach them: any pod in the cluster could.
    Now only the monitoring namespace can; the signed ingest webhook stays open."""
    assert ds.exposure_problems(ds.rendered(kustomization)) == []


def test_monitoring_wiring(kustomization):
    assert ds.monitoring_problems(ds.rendered(kustomization)) == []


@pytest.mark.parametrize("kustomization", SCALED)
def test_autoscalers(kustomization, tmp_path):
    assert ds.scaler_problems(ds.rendered(kustomization), tmp_path) == []


def test_base_has_no_autoscaler_and_overlays_pick_exactly_one_kind():
    assert not ds.objects(ds.rendered("base"), "ScaledObject")
    assert not ds.objects(ds.rendered("base"), "HorizontalPodAutoscaler")
    keda, hpa = ds.rendered("overlays/example"), ds.rendered("overlays/example-hpa")
    workers = lambda docs: [d for d in ds.objects(docs, "Deployment") if d["metadata"]["labels"].get(  # noqa: E731
        "app.kubernetes.io/component") == "worker"]
    assert len(ds.objects(keda, "ScaledObject")) == len(workers(keda)) and not ds.objects(keda, "HorizontalPodAutoscaler")
    assert len(ds.objects(hpa, "HorizontalPodAutoscaler")) == len(workers(hpa)) and not ds.objects(hpa, "ScaledObject")


def test_writeback_is_opt_in():
    """Trial 17: the base always ran a writeback worker, which refuses to start with no target: it crash-looped
    (and fired AssetstreamWorkerDown / StageDown) wherever nobody writes back. Now only an overlay that enables
    components/writeback(-keda|-hpa) runs it, with its targets from a required Secret key; its PDB and scaler
    come and go with it."""
    for name in ("base", "overlays/example-hpa"):
        docs = ds.rendered(name)
        assert not [d for d in docs if d["metadata"]["name"] == "assetstream-writeback"], name
    docs = ds.rendered("overlays/example")
    for kind in ("Deployment", "PodDisruptionBudget", "ScaledObject"):
        assert "assetstream-writeback" in ds.by_name(docs, kind), kind


def test_writeback_hpa_component_passes_the_checks_on_the_hpa_overlay(tmp_path):
    """components/writeback-hpa is in no shipped overlay: render it on top of example-hpa as an operator would."""
    render_dir = tmp_path / "overlay"
    render_dir.mkdir()
    docs = ds.rendered_with("overlays/example-hpa", ["components/writeback-hpa"], render_dir)
    assert "assetstream-writeback" in ds.by_name(docs, "HorizontalPodAutoscaler")
    for check in ("builtin", "settings", "workers", "required", "store", "monitoring", "scalers"):
        assert _check(check)(docs, tmp_path) == [], check


def test_review_app(kustomization, tmp_path):
    """The review desk and search API (`assetstream review`) had no manifest: a platform team on Kubernetes could not
    deploy what editors and front-ends use. components/review-app runs it (the example overlay in header mode behind
    an SSO proxy); wherever it is rendered it runs as one replica with its sessions signed by a Secret, and may reach
    only its Ingress controller's namespace in and DNS, Kafka, the registry and the store out."""
    docs = ds.rendered(kustomization)
    assert ds.review_app_problems(docs, tmp_path) == []
    assert ds.egress_problems(docs, tmp_path) == []


def test_review_app_is_opt_in_and_the_example_serves_it_behind_its_sso_proxy(tmp_path):
    for name in ("base", "overlays/example-hpa"):
        assert "assetstream-review-app" not in ds.by_name(ds.rendered(name), "Deployment"), name
    docs = ds.rendered("overlays/example")
    dep = ds.by_name(docs, "Deployment")["assetstream-review-app"]
    assert ds.pod_spec(dep)["containers"][0]["args"][:1] == ["review"]
    cfg, host, port = ds.review_command(ds.pod_spec(dep)["containers"][0]["args"], ds.pod_settings(docs, ds.pod_spec(dep), tmp_path))
    assert (cfg.auth, host, port) == ("header", "0.0.0.0", 8077)
    ingress = ds.by_name(docs, "Ingress")["assetstream-review-app"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] in ds.by_name(docs, "Service")
    assert f"https://{ingress['spec']['rules'][0]['host']}" == cfg.public_url  # the Host it answers to (else 421)
    for kind in ("Service", "NetworkPolicy"):
        assert any(n.startswith("assetstream-review-app") for n in ds.by_name(docs, kind)), kind


def test_review_app_component_passes_the_checks_on_the_hpa_overlay(tmp_path):
    """components/review-app as the base configures it (basic auth, the editors' passwords from the Secret key
    review-users), rendered on example-hpa as an operator's overlay would."""
    render_dir = tmp_path / "overlay"
    render_dir.mkdir()
    docs = ds.rendered_with("overlays/example-hpa", ["components/review-app"], render_dir)
    dep = ds.by_name(docs, "Deployment")["assetstream-review-app"]
    assert ds.pod_settings(docs, ds.pod_spec(dep), tmp_path).review.auth == "basic"
    for check in ("builtin", "settings", "workers", "secrets", "required", "store", "exposure", "review_app",
                  "egress", "scalers"):
        assert _check(check)(docs, tmp_path) == [], check


def test_example_overlay_pins_an_image():
    for dep in ds.objects(ds.rendered("overlays/example"), "Deployment"):
        image = ds.pod_spec(dep)["containers"][0]["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


# ---- each check catches a broken variant ----------------------------------------------------------------

def _dep(docs, stage="preprocess"):
    return ds.by_name(docs, "Deployment")[f"assetstream-{stage}"]


def _container(docs, stage="preprocess"):
    return ds.pod_spec(_dep(docs, stage))["containers"][0]


def _scaled(docs, stage="enrich"):
    return ds.by_name(docs, "ScaledObject")[f"assetstream-{stage}"]


def _config(docs) -> dict:
    return ds.objects(docs, "ConfigMap")[0]["data"]


def _set_config(docs, old, new):
    data = _config(docs)
    assert old in data["config.yaml"]
    data["config.yaml"] = data["config.yaml"].replace(old, new)


def b_unknown_field(docs):
    _container(docs)["livenessProbe"]["httpGet"]["paht"] = "/healthz"


def b_wrong_type(docs):
    ds.pod_spec(_dep(docs))["terminationGracePeriodSeconds"] = "forty-five"


def b_crd_unknown_field(docs):
    _scaled(docs)["spec"]["maxReplicas"] = 6


def b_crd_trigger_metadata_not_string(docs):
    _scaled(docs)["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100


def b_servicemonitor_field(docs):
    ds.objects(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["scrapeInterval"] = "15s"


def b_prometheusrule_field(docs):
    ds.objects(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"][0]["severity"] = "warning"


def b_config_typo(docs):
    _set_config(docs, "drain_timeout_s:", "drain_timeout_seconds:")


def b_env_typo(docs):
    for e in _container(docs, "enrich")["env"]:
        if e["name"] == "ASSETSTREAM_RUNNER__CONCURRENCY":
            e["name"] = "ASSETSTREAM_RUNNER__CONCURENCY"


def b_grace_too_short(docs):
    ds.pod_spec(_dep(docs, "index"))["terminationGracePeriodSeconds"] = 20


def b_drain_longer_than_grace(docs):
    _set_config(docs, "drain_timeout_s: 25", "drain_timeout_s: 60")


def b_no_pod_name(docs):
    c = _container(docs, "enrich")
    c["env"] = [e for e in c["env"] if e["name"] != "POD_NAME"]


def b_probe_wrong_path(docs):
    _container(docs, "validate")["readinessProbe"]["httpGet"]["path"] = "/healthz"


def b_metrics_port_moved(docs):
    _set_config(docs, "metrics_port: 9400", "metrics_port: 9500")


def b_no_limits(docs):
    del _container(docs, "index")["resources"]["limits"]


def b_preprocess_starved(docs):
    _container(docs, "preprocess")["resources"]["requests"]["cpu"] = "100m"


def b_inplace_retries(docs):
    c = _container(docs, "enrich")
    c["env"] = [e for e in c["env"] if e["name"] != "ASSETSTREAM_RUNNER__RETRY_MODE"]


def b_preprocess_few_threads(docs):
    for e in _container(docs, "preprocess")["env"]:
        if e["name"] == "ASSETSTREAM_RUNNER__CONCURRENCY":
            e["value"] = "2"


def b_no_pdb(docs):
    docs[:] = [d for d in docs if not (d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "assetstream-enrich")]


def b_literal_api_key(docs):
    c = _container(docs, "enrich")
    for e in c["env"]:
        if e["name"] == "ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY":
            e.pop("valueFrom")
            e["value"] = "sk-ant-not-a-real-key"


def _drop_env(container: dict, name: str) -> None:
    container["env"] = [e for e in container["env"] if e["name"] != name]


def _make_optional(docs, stage: str, name: str) -> None:
    next(e for e in _container(docs, stage)["env"] if e["name"] == name)["valueFrom"]["secretKeyRef"]["optional"] = True


def b_no_webhook_secret(docs):
    _drop_env(ds.pod_spec(ds.by_name(docs, "Deployment")["assetstream-ingest"])["containers"][0],
              "ASSETSTREAM_OPS__WEBHOOK_SECRET")


def b_optional_provider_key(docs):
    _make_optional(docs, "enrich", "ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY")


def b_no_store_credentials(docs):
    _drop_env(_container(docs, "index"), "ASSETSTREAM_INDEX__API_KEY")


def b_optional_writeback_targets(docs):
    _make_optional(docs, "writeback", "ASSETSTREAM_WRITEBACK__TARGETS")


def b_other_image(docs):
    _container(docs, "writeback")["image"] = "assetstream"


def b_secret_object(docs):
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "assetstream-secrets"},
                 "stringData": {"anthropic-api-key": "x"}})


def b_secret_in_config(docs):
    _set_config(docs, "kafka:\n", "kafka:\n  sasl_password: hunter2\n")


def b_no_ingest_service(docs):
    docs[:] = [d for d in docs if not (d["kind"] == "Service" and d["metadata"]["name"] == "assetstream-ingest")]


def b_kpis_tcp_readiness(docs):
    c = ds.pod_spec(ds.by_name(docs, "Deployment")["assetstream-kpis"])["containers"][0]
    c["readinessProbe"] = {"tcpSocket": {"port": "web"}, "periodSeconds": 10}


def b_kpis_unscraped_when_not_ready(docs):
    del ds.by_name(docs, "Service")["assetstream-kpis"]["spec"]["publishNotReadyAddresses"]


def b_no_topics_job(docs):
    docs[:] = [d for d in docs if d["kind"] != "Job"]


def b_servicemonitor_port(docs):
    ds.objects(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["port"] = "http-metrics"


def b_metrics_service_selector(docs):
    ds.by_name(docs, "Service")["assetstream-workers"]["spec"]["selector"]["app.kubernetes.io/component"] = "workers"


def b_max_replicas_above_partitions(docs):
    _scaled(docs, "preprocess")["spec"]["maxReplicaCount"] = 12


def b_partitions_shrunk(docs):
    _set_config(docs, "partitions: 6", "partitions: 4")


def b_hpa_above_partitions(docs):
    ds.by_name(docs, "HorizontalPodAutoscaler")["assetstream-index"]["spec"]["maxReplicas"] = 8


def b_wrong_group(docs):
    _scaled(docs, "validate")["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "assetstream-validate"


def b_wrong_topic(docs):
    _scaled(docs, "index")["spec"]["triggers"][0]["metadata"]["topic"] = "assetstream.enriched"


def b_other_brokers(docs):
    _set_config(docs, "events-kafka-bootstrap.kafka.svc:9093", "kafka.other.svc:9092")


def b_both_scalers(docs):
    docs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                 "metadata": {"name": "assetstream-enrich"},
                 "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "assetstream-enrich"},
                          "minReplicas": 1, "maxReplicas": 6, "metrics": []}})


def b_replicas_fixed(docs):
    _dep(docs, "enrich")["spec"]["replicas"] = 3


def b_unscaled_stage(docs):
    docs[:] = [d for d in docs if not (d["kind"] == "ScaledObject" and d["metadata"]["name"] == "assetstream-validate")]


def _review(docs):
    return ds.by_name(docs, "Deployment")["assetstream-review-app"]


def _review_container(docs):
    return ds.pod_spec(_review(docs))["containers"][0]


def b_review_two_replicas(docs):
    _review(docs)["spec"]["replicas"] = 2


def b_review_autoscaled(docs):
    scaled = ds.deep(_scaled(docs))
    scaled["metadata"]["name"] = scaled["spec"]["scaleTargetRef"]["name"] = "assetstream-review-app"
    docs.append(scaled)


def b_review_token_mode(docs):
    _set_config(docs, "auth: header", "auth: token")


def b_review_header_without_proxies(docs):
    _set_config(docs, '  trusted_proxies: ["10.244.0.0/16"]', "")


def b_review_basic_without_users(docs):
    _set_config(docs, "auth: header", "auth: basic")


def b_review_no_public_url(docs):
    _set_config(docs, "  public_url: https://review.example.com\n", "")


def b_review_optional_session_secret(docs):
    next(e for e in _review_container(docs)["env"] if e["name"] == "ASSETSTREAM_REVIEW__SESSION_SECRET")[
        "valueFrom"]["secretKeyRef"]["optional"] = True


def b_review_probe_other_port(docs):
    _review_container(docs)["livenessProbe"]["httpGet"]["port"] = 9400


def b_review_listens_elsewhere(docs):
    _review_container(docs)["args"][-1] = "8080"


def b_review_no_service(docs):
    docs[:] = [d for d in docs if not (d["kind"] == "Service" and d["metadata"]["name"] == "assetstream-review-app")]


def b_review_literal_users(docs):
    _review_container(docs)["env"].append({"name": "ASSETSTREAM_REVIEW__USERS", "value": '{"alice": "hunter2"}'})


def b_review_no_store_credentials(docs):
    _drop_env(_review_container(docs), "ASSETSTREAM_INDEX__PASSWORD")


def b_review_open_to_every_pod(docs):
    del ds.by_name(docs, "NetworkPolicy")["assetstream-review-app-from-ingress"]["spec"]["ingress"][0]["from"]


def b_review_egress_without_store(docs):
    rule = ds.by_name(docs, "NetworkPolicy")["assetstream-review-app-egress"]["spec"]["egress"][1]
    rule["ports"] = [p for p in rule["ports"] if p["port"] != 9200]


def b_review_egress_without_dns(docs):
    ds.by_name(docs, "NetworkPolicy")["assetstream-review-app-egress"]["spec"]["egress"].pop(0)


def _check(name: str) -> Callable:
    return {
        "builtin": lambda docs, tmp: ds.builtin_schema_problems(docs),
        "crd": lambda docs, tmp: ds.crd_schema_problems(docs),
        "settings": ds.settings_problems,
        "workers": ds.worker_problems,
        "secrets": lambda docs, tmp: ds.secret_problems(docs),
        "roles": lambda docs, tmp: ds.role_problems(docs),
        "required": ds.required_setting_problems,
        "store": lambda docs, tmp: ds.store_credential_problems(docs),
        "monitoring": lambda docs, tmp: ds.monitoring_problems(docs),
        "scalers": ds.scaler_problems,
        "exposure": lambda docs, tmp: ds.exposure_problems(docs),
        "review_app": ds.review_app_problems,
        "egress": ds.egress_problems,
    }[name]


BROKEN = [
    ("base", b_unknown_field, "builtin", "paht"),
    ("base", b_wrong_type, "builtin", "terminationGracePeriodSeconds"),
    ("overlays/example", b_crd_unknown_field, "crd", "maxReplicas"),
    ("overlays/example", b_crd_trigger_metadata_not_string, "crd", "lagThreshold"),
    ("overlays/example", b_servicemonitor_field, "crd", "scrapeInterval"),
    ("overlays/example", b_prometheusrule_field, "crd", "severity"),
    ("base", b_config_typo, "settings", "drain_timeout_seconds"),
    ("base", b_env_typo, "settings", "ASSETSTREAM_RUNNER__CONCURENCY"),
    ("base", b_grace_too_short, "workers", "terminationGracePeriodSeconds 20"),
    ("overlays/example", b_drain_longer_than_grace, "workers", "drain_timeout_s 60"),
    ("base", b_no_pod_name, "workers", "POD_NAME"),
    ("base", b_probe_wrong_path, "workers", "readinessProbe"),
    ("base", b_metrics_port_moved, "workers", "runner.metrics_port"),
    ("base", b_no_limits, "workers", "resources.limits"),
    ("base", b_preprocess_starved, "workers", "CPU-bound"),
    ("base", b_no_pdb, "workers", "PodDisruptionBudget"),
    ("base", b_inplace_retries, "workers", "assetstream-enrich: runner.retry_mode is auto"),
    ("base", b_preprocess_few_threads, "workers", "runner.concurrency 2 < 4 x"),
    ("base", b_literal_api_key, "secrets", "ANTHROPIC_API_KEY"),
    ("base", b_secret_object, "secrets", "Secret/assetstream-secrets"),
    ("base", b_secret_in_config, "secrets", "sasl_password"),
    ("base", b_no_ingest_service, "roles", "ingest"),
    ("base", b_no_webhook_secret, "required", "ASSETSTREAM_OPS__WEBHOOK_SECRET is not set"),
    ("overlays/example", b_optional_provider_key, "required", "ANTHROPIC_API_KEY comes from an optional"),
    ("overlays/example", b_optional_writeback_targets, "required",
     "assetstream-writeback: ASSETSTREAM_WRITEBACK__TARGETS comes from an optional"),
    ("overlays/example", b_other_image, "workers", "different images"),
    ("base", b_no_store_credentials, "store", "assetstream-index: stage index uses the search store but gets no "
                                              "ASSETSTREAM_INDEX__API_KEY"),
    ("base", b_no_topics_job, "roles", "topics create"),
    ("base", b_kpis_tcp_readiness, "roles", "assetstream-kpis: readinessProbe must be httpGet /readyz"),
    ("base", b_kpis_unscraped_when_not_ready, "roles", "publishNotReadyAddresses"),
    ("overlays/example", b_servicemonitor_port, "monitoring", "http-metrics"),
    ("base", b_metrics_service_selector, "monitoring", "assetstream-preprocess"),
    ("overlays/example", b_max_replicas_above_partitions, "scalers", "maxReplicaCount 12 > 6"),
    ("overlays/example", b_partitions_shrunk, "scalers", "> 4 partitions"),
    ("overlays/example-hpa", b_hpa_above_partitions, "scalers", "maxReplicas 8 > 6"),
    ("overlays/example", b_wrong_group, "scalers", "consumerGroup"),
    ("overlays/example", b_wrong_topic, "scalers", "topic="),
    ("overlays/example", b_other_brokers, "scalers", "bootstrapServers"),
    ("overlays/example", b_both_scalers, "scalers", "fight"),
    ("overlays/example", b_replicas_fixed, "scalers", "sets replicas"),
    ("overlays/example", b_unscaled_stage, "scalers", "assetstream-validate: 0 autoscalers"),
    ("overlays/example", b_review_two_replicas, "review_app", "assetstream-review-app: replicas 2"),
    ("overlays/example", b_review_autoscaled, "review_app", "replicas 1 and an autoscaler"),
    ("overlays/example", b_review_token_mode, "review_app", "review.auth is token"),
    ("overlays/example", b_review_header_without_proxies, "required",
     "ASSETSTREAM_REVIEW__TRUSTED_PROXIES is not set (`assetstream review` in header mode on 0.0.0.0 exits 2"),
    ("overlays/example", b_review_basic_without_users, "required",
     "assetstream-review-app: ASSETSTREAM_REVIEW__USERS is not set"),
    ("overlays/example", b_review_no_public_url, "review_app", "421"),
    ("overlays/example", b_review_optional_session_secret, "review_app", "session_secret comes from an optional key"),
    ("overlays/example", b_review_probe_other_port, "review_app", "livenessProbe must be httpGet /healthz"),
    ("overlays/example", b_review_listens_elsewhere, "review_app", "listens on 8080"),
    ("overlays/example", b_review_no_service, "review_app", "no Service selects its pods"),
    ("overlays/example", b_review_literal_users, "secrets", "ASSETSTREAM_REVIEW__USERS must come from a secretKeyRef"),
    ("overlays/example", b_review_no_store_credentials, "store", "the review app uses the search store"),
    ("overlays/example", b_review_open_to_every_pod, "exposure", "assetstream-review-app: port 8077"),
    ("overlays/example", b_review_egress_without_store, "egress", "9200/TCP (index.url"),
    ("overlays/example", b_review_egress_without_dns, "egress", "53/UDP (DNS)"),
]


@pytest.mark.parametrize("kustomization,breakage,check,expected", BROKEN,
                         ids=[b[1].__name__[2:] for b in BROKEN])
def test_check_catches_broken_variant(kustomization, breakage, check, expected, tmp_path):
    good = ds.rendered(kustomization)
    assert _check(check)(good, tmp_path) == [], "the unbroken manifests must pass this check"
    broken = ds.rendered(kustomization)
    breakage(broken)
    problems = _check(check)(broken, tmp_path)
    assert any(expected in p for p in problems), f"{breakage.__name__} not caught by {check}: {problems}"
