"""The deployment layout stays true: the Helm chart lints clean under Helm's own engine, k8s/vane.yaml is the
chart rendered with its defaults, and what they deploy runs every service on the documented ports
(docs/reference.md) with every setting the services read, probes on /healthz and /readyz, and a migration hook
before them."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from services.common.settings import ENVIRONMENT
from tests.support.chart import CHART, REPO, SERVICES, Manifest, container, one, rendered, renderer
from tests.support.processes import SERVICE_PORTS

# docs/reference.md's "Processes and ports": (HTTP port, gRPC port or None).
CONTRACT_PORTS = {
    "registry": (8081, 50051),
    "ingest": (4318, 4317),
    "evaluator": (8082, None),
    "aggregator": (8080, None),
    "alert": (8083, None),
}
_VAR = re.compile(r"\bVANE_[A-Z0-9_]+\b")


_rendered = rendered
_one = one
_container = container


def _service_container(manifests: list[Manifest], service: str) -> Manifest:
    return _container(_one(manifests, "Deployment", f"vane-{service}"))


def _settings(manifests: list[Manifest]) -> dict[str, str]:
    """What every service's environment gets from the ConfigMap and the Secret."""
    return _one(manifests, "ConfigMap", "vane")["data"] | _one(manifests, "Secret", "vane")["stringData"]


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    """k8s/vane.yaml, as a user applies it."""
    return [m for m in yaml.safe_load_all((REPO / "k8s" / "vane.yaml").read_text()) if m]


@pytest.mark.parametrize("values", [None, "all options", "bundled"])
def test_chart_lints_clean_under_helm(values: str | None) -> None:
    chosen = {None: None, "all options": _ALL_OPTIONS, "bundled": _BUNDLED}[values]
    report = helm.lint(str(CHART), chosen, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_k8s_manifests_are_the_chart_rendered_with_default_values() -> None:
    expected = renderer.manifests_text(renderer.render())
    assert (REPO / "k8s" / "vane.yaml").read_text() == expected, "run: .venv/bin/python k8s/render.py"


# Every option that changes what the chart renders, at once.
_ALL_OPTIONS: dict[str, Any] = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "tls": [{"secretName": "t", "hosts": ["vane.example.com"]}],
        "grpc": {"enabled": True, "tls": [{"secretName": "g", "hosts": ["otlp-grpc.vane.example.com"]}]},
    },
    "networkPolicy": {"enabled": True, "ingressFrom": [{"namespaceSelector": {}}]},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "podDisruptionBudget": {"maxUnavailable": "50%"},
    "initProject": {"name": "acme", "publicKey": "pk-vane-acme", "secretKey": "sk-vane-acme"},
    "secretEnv": {"VANE_JUDGE_API_KEY": "sk-judge"},
    "services": {
        "evaluator": {"env": {"VANE_JUDGE_MODEL": "gpt-4o"}},
        "ingest": {
            "serviceType": "LoadBalancer",
            "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
        },
    },
    "extraEnv": [{"name": "TZ", "value": "UTC"}],
    "imagePullSecrets": [{"name": "registry"}],
    "podAnnotations": {"team": "llm"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "llm", "operator": "Exists"}],
    "affinity": {"podAntiAffinity": {}},
    "devReload": True,
}
# An evaluation install: the datastores in the release.
_BUNDLED: dict[str, Any] = {"datastores": {"bundled": {"enabled": True, "postgres": {"password": "evaluation"}}}}


@pytest.mark.parametrize("kube", ["1.25", "1.37"])  # Chart.yaml's oldest, and the newest schema at hand
@pytest.mark.parametrize("values", [None, _ALL_OPTIONS, {"datastores": {"existingSecret": "mine"}}, _BUNDLED])
def test_rendered_manifests_are_valid_kubernetes_objects(kube: str, values: dict[str, Any] | None) -> None:
    for manifest in _rendered(values):
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's CRD: no schema in Kubernetes' own (tests/unit/test_chart_objects.py)
        kubernetes_validate.validate(manifest, kube, strict=True)


def test_chart_bundles_no_datastores_by_default(manifests: list[Manifest]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert not chart.get("dependencies") and not (CHART / "charts").exists()
    kinds = {"Secret", "ConfigMap", "Service", "Deployment", "Job", "PodDisruptionBudget"}
    assert {m["kind"] for m in manifests} <= kinds
    urls = _one(manifests, "Secret", "vane")["stringData"]
    assert urls["VANE_DATABASE_URL"].startswith("postgresql://")
    assert urls["VANE_NATS_URL"].startswith("nats://")
    assert urls["VANE_REDIS_URL"].startswith("redis://")


def test_every_shared_setting_reaches_every_service(manifests: list[Manifest]) -> None:
    missing = sorted({name for name, _, _ in ENVIRONMENT} - set(_settings(manifests)))
    assert not missing, f"the chart does not set {missing}"
    for service in SERVICES:
        sources = _service_container(manifests, service)["envFrom"]
        assert {"configMapRef": {"name": "vane"}} in sources and {"secretRef": {"name": "vane"}} in sources


def _service_own_variables() -> dict[str, set[str]]:
    """Variables a service reads beyond the shared settings, by the service whose package reads them."""
    shared = {name for name, _, _ in ENVIRONMENT}
    found: dict[str, set[str]] = {}
    for service in SERVICES:
        for path in (REPO / "services" / service).rglob("*.py"):
            names = {n for n in _VAR.findall(path.read_text()) if not n.endswith("_")} - shared
            found.setdefault(service, set()).update(names - {"VANE_INGEST_WORKER_INDEX"})  # set by ingest itself
    return found


def test_every_variable_a_service_reads_can_be_set_on_that_service() -> None:
    own = _service_own_variables()
    values = {"services": {s: {"env": {name: f"set-{name}" for name in names}} for s, names in own.items()}}
    manifests = _rendered(values)
    for service, names in own.items():
        env = {e["name"]: e["value"] for e in _service_container(manifests, service).get("env", [])}
        assert {name: env.get(name) for name in names} == {name: f"set-{name}" for name in names}


def test_secret_settings_join_the_charts_secret() -> None:
    secret = _one(_rendered({"secretEnv": {"VANE_JUDGE_API_KEY": "sk-judge"}}), "Secret", "vane")
    assert secret["stringData"]["VANE_JUDGE_API_KEY"] == "sk-judge"


def test_chart_leaves_the_services_defaults_but_binds_all_interfaces(manifests: list[Manifest]) -> None:
    config = _one(manifests, "ConfigMap", "vane")["data"]
    defaults = {name: default for name, default, _ in ENVIRONMENT}
    assert config.pop("VANE_BIND_HOST") == "0.0.0.0"
    assert config.pop("VANE_REGISTRY_URL") == "http://vane-registry:8081"  # the registry's Service in the cluster
    # An empty variable is an unset one to the services (Settings.from_env): the README's default applies.
    chosen = {name: value for name, value in config.items() if value}
    assert chosen.keys() >= {"VANE_NAMESPACE", "VANE_LOG_FORMAT", "VANE_SHUTDOWN_GRACE_SECONDS"}
    for name, value in chosen.items():
        assert name.endswith("_PORT") or value == defaults[name], name


def _check_service_wiring(manifests: list[Manifest], ports: dict[str, tuple[int, int | None]]) -> None:
    """Each service runs `vane serve <name>`; its port variables, container ports, Service ports, probes and
    scrape annotation all agree."""
    config = _one(manifests, "ConfigMap", "vane")["data"]
    for service, (http_port, grpc_port) in ports.items():
        deployment = _one(manifests, "Deployment", f"vane-{service}")
        container = _container(deployment)
        assert container["command"] == ["vane", "serve", service]
        expected = {"http": http_port} | ({"grpc": grpc_port} if grpc_port else {})
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == expected
        assert {name: config[var] for name, var in zip(("http", "grpc"), SERVICE_PORTS[service], strict=False)} == {
            name: str(port) for name, port in expected.items()
        }
        service_ports = _one(manifests, "Service", f"vane-{service}")["spec"]["ports"]
        assert {p["name"]: p["port"] for p in service_ports} == expected
        assert all(p["targetPort"] == p["name"] for p in service_ports)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(http_port), "/metrics")


def test_each_service_runs_vane_serve_on_the_contract_ports(manifests: list[Manifest]) -> None:
    _check_service_wiring(manifests, CONTRACT_PORTS)


def test_a_port_changed_in_values_changes_everywhere_it_is_used() -> None:
    moved = {"registry": (9081, 9051), "ingest": (9318, 9317), "alert": (9083, None)}
    values = {"services": {s: {"httpPort": h} | ({"grpcPort": g} if g else {}) for s, (h, g) in moved.items()}}
    _check_service_wiring(_rendered(values), CONTRACT_PORTS | moved)


def test_pods_get_longer_to_stop_than_the_prestop_pause_and_shutdown_grace(manifests: list[Manifest]) -> None:
    grace = float(_one(manifests, "ConfigMap", "vane")["data"]["VANE_SHUTDOWN_GRACE_SECONDS"])
    for service in SERVICES:
        pod = _one(manifests, "Deployment", f"vane-{service}")["spec"]["template"]["spec"]
        command = _service_container(manifests, service)["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep" and int(command[1]) > 0
        assert pod["terminationGracePeriodSeconds"] > int(command[1]) + grace


def test_replicas_and_resources_come_from_values_per_service() -> None:
    values = {"services": {"ingest": {"replicas": 7, "resources": {"limits": {"memory": "2Gi"}}}}}
    ingest = _one(_rendered(values), "Deployment", "vane-ingest")
    assert ingest["spec"]["replicas"] == 7
    assert _container(ingest)["resources"]["limits"] == {"memory": "2Gi"}


def test_services_run_as_non_root_on_a_read_only_filesystem(manifests: list[Manifest]) -> None:
    for service in SERVICES:
        pod = _one(manifests, "Deployment", f"vane-{service}")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert _service_container(manifests, service)["securityContext"]["readOnlyRootFilesystem"] is True


def test_migration_runs_vane_migrate_as_a_hook_before_install_and_upgrade(manifests: list[Manifest]) -> None:
    job = _one(manifests, "Job", "vane-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vane", "migrate"]
    database = next(e for e in container["env"] if e["name"] == "VANE_DATABASE_URL")["valueFrom"]["secretKeyRef"]
    # Hooks run before the release's own Secret exists: the Job's Secret is a hook too, created first.
    secret = _one(manifests, "Secret", database["name"])
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == annotations["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert secret["stringData"][database["key"]] == _one(manifests, "Secret", "vane")["stringData"]["VANE_DATABASE_URL"]


def test_external_datastores_and_init_project_come_from_values() -> None:
    values = {
        "datastores": {
            "databaseUrl": "postgresql://vane:pw@db.example:5432/vane",
            "natsUrl": "nats://bus.example:4222",
            "redisUrl": "redis://cache.example:6379/1",
        },
        "initProject": {"name": "acme", "publicKey": "pk-vane-acme", "secretKey": "sk-vane-acme"},
    }
    secret = _one(_rendered(values), "Secret", "vane")["stringData"]
    assert secret == {
        "VANE_DATABASE_URL": "postgresql://vane:pw@db.example:5432/vane",
        "VANE_NATS_URL": "nats://bus.example:4222",
        "VANE_REDIS_URL": "redis://cache.example:6379/1",
        "VANE_INIT_PROJECT": "acme",
        "VANE_INIT_PUBLIC_KEY": "pk-vane-acme",
        "VANE_INIT_SECRET_KEY": "sk-vane-acme",
    }


def test_an_init_project_without_its_keys_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"initProject\.publicKey is required"):
        _rendered({"initProject": {"name": "acme"}})


def test_an_existing_secret_replaces_the_charts_own() -> None:
    manifests = _rendered({"datastores": {"existingSecret": "my-vane"}})
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for service in SERVICES:
        assert {"secretRef": {"name": "my-vane"}} in _service_container(manifests, service)["envFrom"]
    job = _one(manifests, "Job", "vane-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert job["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "my-vane", "key": "VANE_DATABASE_URL"}


def test_a_release_with_another_name_prefixes_every_object() -> None:
    documents = [yaml.safe_load(d) for _, d in renderer.render(None, release="prod")]
    assert all(m["metadata"]["name"].startswith("prod-vane") for m in documents)
    registry = _one(documents, "Deployment", "prod-vane-registry")
    assert {"configMapRef": {"name": "prod-vane"}} in _container(registry)["envFrom"]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "k8s" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_image_installs_sdk_and_server_and_runs_vane_as_non_root() -> None:
    steps = _dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim AS build")
    # The dependencies from the lock, with their hashes; then the SDK and the server themselves, nothing more.
    assert ("RUN", "/opt/vane/bin/pip install --require-hashes --no-deps -r k8s/requirements.lock") in steps
    assert ("RUN", "/opt/vane/bin/pip install --no-deps ./sdk/python . && /opt/vane/bin/pip check") in steps
    release = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert release[0] == ("FROM", "runtime AS release")  # the default target is the production image
    runtime = steps[steps.index(("FROM", "python:3.11-slim AS runtime")) :]
    assert ("ENTRYPOINT", '["vane"]') in runtime
    user = next(arg for op, arg in runtime if op == "USER")
    assert user.split(":")[0] not in ("0", "root")
    run_as = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    assert user == f"{run_as}:{run_as}"


def test_image_build_context_holds_everything_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / "k8s" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    sources = [arg.split()[:-1] for op, arg in _dockerfile_instructions() if op == "COPY" and "--from" not in arg]
    assert sources
    for paths in sources:
        for path in paths:
            assert (REPO / path).exists() and path.rstrip("/") in allowed, path


def _starlark_calls(path: Path) -> dict[str, list[ast.Call]]:
    """The Tiltfile's calls by function name (Starlark is a subset of Python's syntax)."""
    calls: dict[str, list[ast.Call]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, []).append(node)
    return calls


def _keyword(call: ast.Call, name: str) -> Any:
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == name))


def test_tiltfile_builds_the_dev_image_deploys_the_chart_and_forwards_every_port(manifests: list[Manifest]) -> None:
    tilt = REPO / "tilt"
    calls = _starlark_calls(tilt / "Tiltfile")
    (build,) = calls["docker_build"]
    assert ast.literal_eval(build.args[0]) == "vane"
    assert (tilt / _keyword(build, "dockerfile")).resolve() == REPO / "k8s" / "Dockerfile"
    assert _keyword(build, "target") == "dev" and ("FROM", "runtime AS dev") in _dockerfile_instructions()
    (chart,) = calls["helm"]
    assert (tilt / ast.literal_eval(chart.args[0])).resolve() == CHART
    overrides = _keyword(chart, "set")
    assert "devReload=true" in overrides
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for override in overrides:  # each names a value the chart has
        node = defaults
        for key in override.split("=", 1)[0].split("."):
            assert isinstance(node, dict) and key in node, override
            node = node[key]

    module = ast.parse((tilt / "Tiltfile").read_text())
    ports_node = next(n.value for n in module.body if isinstance(n, ast.Assign) and n.targets[0].id == "PORTS")  # type: ignore[attr-defined]
    forwarded = ast.literal_eval(ports_node)
    contract = {service: {port for port in ports if port} for service, ports in CONTRACT_PORTS.items()}
    assert {service: set(ports) for service, ports in forwarded.items()} == contract
    deps = {m["metadata"]["name"] for m in yaml.safe_load_all((tilt / "deps.yaml").read_text())}
    workloads = {m["metadata"]["name"] for m in manifests if m["kind"] in ("Deployment", "Job")} | deps
    named = {ast.literal_eval(c.args[0]) for c in calls["k8s_resource"] if isinstance(c.args[0], ast.Constant)}
    assert named <= workloads and {"postgres", "nats", "redis"} <= deps


def test_dev_reload_restarts_each_service_on_code_changes() -> None:
    manifests = _rendered({"devReload": True})
    for service in SERVICES:
        command = _service_container(manifests, service)["command"]
        assert command[:3] == ["watchfiles", "--filter", "python"] and command[3] == f"vane serve {service}"
        assert all(path.startswith("/opt/vane/lib/python3.11/site-packages/") for path in command[4:])


def test_tiltfile_overrides_pass_the_values_schema_and_its_context_holds_what_the_image_copies() -> None:
    calls = _starlark_calls(REPO / "tilt" / "Tiltfile")
    (chart,) = calls["helm"]
    values: dict[str, Any] = {}
    for override in _keyword(chart, "set"):
        values = _merged(values, helm.parse_set_string(override))
    deployment = _one(_rendered(values), "Deployment", "vane-registry")  # the schema refuses nothing Tilt sets
    assert _container(deployment)["securityContext"]["readOnlyRootFilesystem"] is False  # live update writes code
    (build,) = calls["docker_build"]
    only = set(_keyword(build, "only"))
    sources = [arg.split()[:-1] for op, arg in _dockerfile_instructions() if op == "COPY" and "--from" not in arg]
    assert {path.rstrip("/") for paths in sources for path in paths} <= only


def test_only_development_may_write_to_the_root_filesystem() -> None:
    writable = {"securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False}}
    with pytest.raises(helm.HelmValuesError, match="readOnlyRootFilesystem': value must be true"):
        _rendered(writable)
    assert _rendered({**writable, "devReload": True})


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
