"""deploy/: the Prometheus configuration and alert rules and the Grafana dashboard parse, and ask only for
metrics that our code, the Temporal SDK or Prometheus itself export; compose starts them behind a profile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import temporalio.bridge
import yaml

from ttelgo import business_metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SOURCES = [
    ROOT / "worker.py",
    *(p for d in ("api", "activities", "workflows", "ttelgo") for p in (ROOT / d).rglob("*.py")),
]
SUFFIXES = re.compile(r"_(total|bucket|sum|count)$")
PROMETHEUS_OWN = {"up"}


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana/dashboards/ttelgo.json").read_text())


def dashboard_queries() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def metrics_used(expr: str) -> set[str]:
    """The metric names in a PromQL expression: ours, the SDK's, the HTTP ones, and Prometheus' `up`."""
    return set(re.findall(r"\b(?:ttelgo|temporal|http)_\w+|\bup\b(?=\{|\s|$)", expr))


def exported_by_our_code() -> set[str]:
    """Every metric name our code defines: a string literal `ttelgo_…` or `http_…` in a source file."""
    literals = (re.findall(r"\"((?:ttelgo|http)_[a-z_]+)\"", p.read_text()) for p in SOURCES)
    return {name for found in literals for name in found}


def exported_by_the_temporal_sdk(name: str) -> bool:
    """The SDK's metric names are compiled into its bridge library (the `temporal_` prefix is added on
    export)."""
    library = next(Path(temporalio.bridge.__file__).parent.glob("temporal_sdk_bridge*"))
    return name.removeprefix("temporal_").encode() in library.read_bytes()


def test_the_alert_rules_cover_the_cases_operators_asked_for() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {"SupplierBalanceLow", "OrdersFailing", "InboundWebhookStuck", "WorkflowTaskFailures"} <= names
    for rule in alert_rules():
        assert rule["expr"] and rule["annotations"]["summary"] and rule["labels"]["severity"]


def test_the_dashboard_has_a_panel_for_each_business_metric_http_and_sdk_failures() -> None:
    used = set().union(*map(metrics_used, dashboard_queries()))
    bases = {SUFFIXES.sub("", name) for name in used}
    ours = {v for k, v in vars(business_metrics).items() if k.isupper() and isinstance(v, str)}
    assert ours <= bases, f"no panel for {ours - bases}"
    assert {
        "ttelgo_reconciliation_findings",
        "http_requests",
        "temporal_workflow_task_execution_failed",
    } <= bases


def test_every_metric_the_rules_and_dashboard_use_is_exported() -> None:
    ours = exported_by_our_code()
    assert "ttelgo_orders_finished" in ours and "http_requests" in ours  # the grep finds definitions
    queries = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
    for name in set().union(*map(metrics_used, queries)):
        base = SUFFIXES.sub("", name)
        if name.startswith("temporal_"):
            assert exported_by_the_temporal_sdk(base), name
        else:
            assert base in ours or name in PROMETHEUS_OWN, f"{name} is not a metric our code exports"


def test_a_misspelt_metric_would_be_caught() -> None:
    assert "ttelgo_orders_finishd" not in exported_by_our_code()
    assert not exported_by_the_temporal_sdk("temporal_workflow_task_execution_faild")


def test_prometheus_scrapes_the_api_with_its_token_and_the_worker() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["api"]["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert jobs["worker"]["static_configs"][0]["targets"] == ["worker:9464"]
    assert config["rule_files"] == ["alerts.yml"]


def test_every_rule_and_dashboard_query_is_valid_promql() -> None:
    # Parsed by the Rust port of Prometheus' own parser, so a typo fails here rather than in Grafana.
    queries = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
    refused = {}
    for query in queries:
        try:
            promql_parser.parse(query)
        except ValueError as exc:
            refused[query] = str(exc)
    assert refused == {}
    with pytest.raises(ValueError):  # and the parser does refuse a broken one
        promql_parser.parse("sum by (channel (ttelgo_orders_finished_total")


def test_grafana_is_provisioned_with_the_datasource_and_dashboard() -> None:
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/ttelgo.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_compose_starts_prometheus_and_grafana_behind_the_monitoring_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    for name in ("postgres", "temporal", "api", "worker"):
        assert "profiles" not in services[name]  # the product itself starts without the profile
    mounts = {
        v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"] if v.startswith("./")
    }
    assert mounts == {"./deploy/prometheus": "/etc/prometheus"}
    assert "metrics_token" in services["prometheus"]["secrets"]
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    grafana = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"] if v.startswith("./")}
    assert grafana == {
        "./deploy/grafana/provisioning": "/etc/grafana/provisioning",
        "./deploy/grafana/dashboards": "/etc/grafana/dashboards",
    }
    # Prometheus reaches the worker's metrics port on the compose network.
    assert services["worker"]["environment"]["WORKER_METRICS_HOST"] == "0.0.0.0"
    for path in ("./deploy/prometheus", "./deploy/grafana/provisioning", "./deploy/grafana/dashboards"):
        assert (ROOT / path).is_dir()
