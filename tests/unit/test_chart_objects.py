"""What a platform team checks in the chart beside the Deployments: every container hardened and bounded, a
PodDisruptionBudget and an optional HorizontalPodAutoscaler per service, NetworkPolicies that open only what
each service uses, an optional ServiceMonitor, a values schema that refuses bad values with a message, the
Ingress as the one origin, and in-chart datastores for an evaluation install."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from services.aggregator.app import NEEDS as AGGREGATOR_NEEDS
from services.alert.app import NEEDS as ALERT_NEEDS
from services.common.runtime import Needs
from services.evaluator.app import NEEDS as EVALUATOR_NEEDS
from services.ingest.app import NEEDS as INGEST_NEEDS
from services.registry.app import NEEDS as REGISTRY_NEEDS
from tests.support.chart import SERVICES, Manifest, container, of_kind, one, rendered, route

NEEDS: dict[str, Needs] = {
    "registry": REGISTRY_NEEDS,
    "ingest": INGEST_NEEDS,
    "evaluator": EVALUATOR_NEEDS,
    "aggregator": AGGREGATOR_NEEDS,
    "alert": ALERT_NEEDS,
}
BUNDLED: dict[str, Any] = {"datastores": {"bundled": {"enabled": True, "postgres": {"password": "evaluation"}}}}
EVERYTHING: dict[str, Any] = {
    **BUNDLED,
    "networkPolicy": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True}},
    "ingress": {"enabled": True, "className": "nginx", "host": "vane.test"},
    "services": {s: {"autoscaling": {"enabled": True}} for s in SERVICES},
}


def _workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet", "Job")]


@pytest.mark.parametrize("values", [None, EVERYTHING], ids=["defaults", "everything"])
def test_every_container_runs_as_non_root_read_only_with_limits(values: dict[str, Any] | None) -> None:
    workloads = _workloads(rendered(values))
    assert len(workloads) == (6 if values is None else 9)
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{workload['metadata']['name']}/{c['name']}"
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], where
            if workload["kind"] != "Job":  # a Job's container runs to its end: nothing to probe
                assert c["livenessProbe"] and c["readinessProbe"], where


def test_each_service_has_a_disruption_budget_over_its_own_pods() -> None:
    manifests = rendered()
    for service in SERVICES:
        budget = one(manifests, "PodDisruptionBudget", f"vane-{service}")
        pods = one(manifests, "Deployment", f"vane-{service}")["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == pods
    assert not of_kind(rendered({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")


def test_an_autoscaled_service_leaves_its_replicas_to_the_autoscaler() -> None:
    scaling = {"enabled": True, "minReplicas": 3, "maxReplicas": 12, "targetMemoryUtilizationPercentage": 75}
    manifests = rendered({"services": {"ingest": {"autoscaling": scaling}}})
    (hpa,) = of_kind(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vane-ingest"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 70, "memory": 75}
    assert "replicas" not in one(manifests, "Deployment", "vane-ingest")["spec"]
    assert one(manifests, "Deployment", "vane-registry")["spec"]["replicas"] == 2
    assert not of_kind(rendered(), "HorizontalPodAutoscaler")


def _ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for p in rule.get("ports", [])}


def test_network_policies_open_each_services_own_ports_and_only_the_datastores_it_uses() -> None:
    manifests = rendered({"networkPolicy": {"enabled": True}})
    store_ports = {"postgres": 5432, "nats": 4222, "redis": 6379}
    dns = {(53, "UDP"), (53, "TCP")}
    for service in (*SERVICES, "migrate"):
        policy = one(manifests, "NetworkPolicy", f"vane-{service}")["spec"]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == service
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
        egress = policy["egress"]
        assert _ports(egress[0]) == dns and "to" not in egress[1]
        if service == "migrate":
            assert policy["ingress"] == [] and _ports(egress[1]) == {(5432, "TCP")} and len(egress) == 2
            continue
        ingress, *also = policy["ingress"]
        if service == "registry":  # and the aggregator, which promotes an experiment's winner through it
            (promotions,) = also
            assert promotions["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "aggregator"
            assert _ports(promotions) == {(8081, "TCP")}
        else:
            assert also == []
        deployment = container(one(manifests, "Deployment", f"vane-{service}"))
        assert _ports(ingress) == {(p["containerPort"], "TCP") for p in deployment["ports"]}
        needs = NEEDS[service]
        used = {name for name in store_ports if getattr(needs, name)}
        assert _ports(egress[1]) == {(store_ports[name], "TCP") for name in used}, service
        extra = egress[2:]
        if service == "evaluator":
            assert [_ports(rule) for rule in extra] == [{(443, "TCP")}]  # the judge's API
        elif service == "alert":
            assert extra == [{}]  # webhooks go anywhere
        elif service == "aggregator":
            (registry,) = extra
            assert registry["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "registry"
            assert _ports(registry) == {(8081, "TCP")}
        else:
            assert extra == []
    assert not of_kind(rendered(), "NetworkPolicy")


def test_the_migration_hooks_policy_exists_before_the_hook_runs() -> None:
    policy = one(rendered({"networkPolicy": {"enabled": True}}), "NetworkPolicy", "vane-migrate")
    job = one(rendered(), "Job", "vane-migrate")
    hook = policy["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    assert int(hook["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_the_service_monitor_scrapes_every_services_metrics_port() -> None:
    manifests = rendered({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = one(manifests, "ServiceMonitor", "vane")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in of_kind(manifests, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert sorted(s["metadata"]["name"] for s in selected) == sorted(f"vane-{s}" for s in SERVICES)
    assert all("http" in {p["name"] for p in s["spec"]["ports"]} for s in selected)
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert not of_kind(rendered(), "ServiceMonitor")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"services": {"ingest": {"replicas": "two"}}}, "/services/ingest/replicas': got string, want integer"),
        ({"services": {"registry": {"httpPort": 70000}}}, "/services/registry/httpPort"),
        ({"datastores": {"databaseUrl": "mysql://db:3306/vane"}}, "does not match pattern"),
        ({"replica": 3}, "additional properties 'replica' not allowed"),
        ({"services": {"alert": {"replica": 3}}}, "additional properties 'replica' not allowed"),
        ({"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 10001}}, "runAsNonRoot': value must be true"),
        ({"securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False}}, "must be true"),
        ({"config": {"LOG_LEVEL": "debug"}}, "'LOG_LEVEL' does not match pattern '^VANE_"),
        ({"initProject": {"name": "acme", "publicKey": "acme-public", "secretKey": "sk-vane-x"}}, "publicKey"),
        ({"ingress": {"host": "https://vane.example.com"}}, "/ingress/host"),
    ],
)
def test_a_bad_value_fails_the_install_with_a_message_naming_it(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        rendered(values)


# (path, the service that owns it): a sample of every public API's paths, and the dashboard.
OWNERS = [
    ("/", "aggregator"),
    ("/ui/versions", "aggregator"),
    ("/api/v1/prompts", "registry"),
    ("/api/v1/prompts/support-reply", "registry"),
    ("/api/v1/prompts/support-reply/versions/2", "registry"),
    ("/api/v1/prompts/support-reply/rollouts", "registry"),
    ("/api/v1/prompts/support-reply/metrics", "aggregator"),
    ("/api/v1/prompts/support-reply/timeseries", "aggregator"),
    ("/api/v1/keys", "registry"),
    ("/api/public/v2/prompts/support-reply", "registry"),
    ("/v1/traces", "ingest"),
    ("/api/public/otel/v1/traces", "ingest"),
    ("/tracer/v1/traces", "ingest"),
    ("/tracer/custom-eval-config/check_exists/", "ingest"),
    ("/api/v1/scores", "ingest"),
    ("/api/public/scores", "ingest"),
    ("/api/v1/score-configs", "ingest"),
    ("/api/v1/models", "ingest"),
    ("/api/v1/scores/pending", "aggregator"),
    ("/api/v1/evaluators/catalogue", "evaluator"),
    ("/api/v1/evaluations/errors", "evaluator"),
    ("/api/v1/alerts/rules", "alert"),
    ("/api/v1/versions/metrics", "aggregator"),
    ("/api/v1/compare", "aggregator"),
    ("/api/v1/winner", "aggregator"),
    ("/api/v1/experiments/42", "aggregator"),
    ("/api/v1/regressions", "aggregator"),
    ("/api/v1/traces", "aggregator"),
    ("/api/v1/runs/5b8efff798038103d269b633813fc60c", "aggregator"),
]


def test_the_ingress_is_one_origin_sending_each_path_to_the_service_that_owns_it() -> None:
    manifests = rendered({"ingress": {"enabled": True, "className": "nginx", "host": "vane.test"}})
    ingress = one(manifests, "Ingress", "vane")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/use-regex": "true"}
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "vane.test"
    services = {s["metadata"]["name"] for s in of_kind(manifests, "Service")}
    for entry in rule["http"]["paths"]:
        assert entry["backend"]["service"]["name"] in services and entry["backend"]["service"]["port"] == {
            "name": "http"
        }
    routed = {path: route(ingress, path) for path, _ in OWNERS}
    assert routed == {path: f"vane-{service}" for path, service in OWNERS}
    assert "Ingress" not in {m["kind"] for m in rendered()}


def test_ingress_annotations_join_or_replace_the_regex_ones() -> None:
    values = {"enabled": True, "className": "traefik", "regexAnnotations": {"x/regex": "on"}, "annotations": {"a": "b"}}
    ingress = one(rendered({"ingress": values}), "Ingress", "vane")
    assert ingress["metadata"]["annotations"] == {"x/regex": "on", "a": "b"}


def test_grpc_gets_hosts_of_its_own_on_each_services_grpc_port() -> None:
    values = {"enabled": True, "className": "nginx", "grpc": {"enabled": True, "hosts": {"registry": "p.test"}}}
    manifests = rendered({"ingress": values})
    grpc = one(manifests, "Ingress", "vane-grpc")
    assert grpc["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}
    backends = {r["host"]: r["http"]["paths"][0]["backend"]["service"] for r in grpc["spec"]["rules"]}
    assert backends == {
        "p.test": {"name": "vane-registry", "port": {"name": "grpc"}},
        "otlp-grpc.vane.example.com": {"name": "vane-ingest", "port": {"name": "grpc"}},
    }
    with pytest.raises(helm.HelmValuesError, match="additional properties 'evaluator' not allowed"):
        rendered({"ingress": {"enabled": True, "grpc": {"enabled": True, "hosts": {"evaluator": "e.test"}}}})


def test_an_evaluation_install_brings_its_datastores_and_migrates_once_postgres_answers() -> None:
    manifests = rendered(BUNDLED)
    stores = {s["metadata"]["name"]: s for s in of_kind(manifests, "StatefulSet")}
    assert set(stores) == {"vane-postgres", "vane-nats", "vane-redis"}
    assert "--jetstream" in container(stores["vane-nats"])["args"]
    urls = one(manifests, "Secret", "vane")["stringData"]
    assert urls["VANE_DATABASE_URL"] == "postgresql://postgres:evaluation@vane-postgres:5432/vane"
    assert urls["VANE_NATS_URL"] == "nats://vane-nats:4222"
    assert urls["VANE_REDIS_URL"] == "redis://vane-redis:6379/0"
    for name, port in (("vane-postgres", 5432), ("vane-nats", 4222), ("vane-redis", 6379)):
        service = one(manifests, "Service", name)
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        assert service["spec"]["selector"].items() <= stores[name]["spec"]["template"]["metadata"]["labels"].items()
    # A pre-install hook would run before the in-chart Postgres exists: here the Job is an ordinary one.
    job = one(manifests, "Job", "vane-migrate")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert job["spec"]["template"]["spec"]["initContainers"][0]["command"][-1] == "vane-postgres"
    assert job["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "vane"
    assert not [m for m in manifests if m["metadata"]["name"] == "vane-migrate" and m["kind"] == "Secret"]


def test_an_evaluation_install_needs_a_postgres_password() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"datastores\.bundled\.postgres\.password is required"):
        rendered({"datastores": {"bundled": {"enabled": True}}})
