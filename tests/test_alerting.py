"""Alert routing: Alertmanager's config from stack config passes `amtool check-config`, routes each severity to
its receiver (`amtool config routes test`), reads credentials from the mounted secret and never from values."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_order import release_of, waits_for
from promtool import amtool

from components.alerting import AlertingConfig, _needed_keys, alertmanager_config
from infra.offline import Graph
from stacks.loader import ConfigError, validate

RELEASE = "kubernetes:helm.sh/v3:Release"


def alertmanager_values(graph: Graph) -> dict[str, Any]:
    return graph.one(RELEASE, "observability").inputs["values"]["alertmanager"]


def write_config(config: dict[str, Any], directory: Path) -> str:
    (directory / "alertmanager.yaml").write_text(yaml.safe_dump(config))
    return "alertmanager.yaml"


def receiver_for(directory: Path, *labels: str) -> str:
    return amtool("config", "routes", "test", "--config.file=alertmanager.yaml", *labels, cwd=directory).strip()


def test_config_is_valid_for_alertmanager(graph: Graph, tmp_path: Path) -> None:
    path = write_config(alertmanager_values(graph)["config"], tmp_path)
    assert "SUCCESS" in amtool("check-config", path, cwd=tmp_path)


def test_severities_route_to_their_receivers(prod_graph: Graph, tmp_path: Path) -> None:
    write_config(alertmanager_values(prod_graph)["config"], tmp_path)
    assert receiver_for(tmp_path, "severity=critical", "alertname=LlmAvailabilityBudgetBurnFast") == "critical"
    assert receiver_for(tmp_path, "severity=warning", "alertname=LlmGpusIdle") == "warning"
    assert receiver_for(tmp_path, "alertname=Watchdog", "severity=none") == "null"
    assert receiver_for(tmp_path, "alertname=LlmRolloutInProgress", "severity=info") == "null"


def test_prod_pages_pagerduty_and_tickets_slack_from_the_mounted_secret(prod_graph: Graph) -> None:
    values = alertmanager_values(prod_graph)
    receivers = {r["name"]: r for r in values["config"]["receivers"]}
    (mounted,) = values["alertmanagerSpec"]["secrets"]
    secret = prod_graph.one("kubernetes:core/v1:Secret", "observability-alert-routing").inputs["metadata"]
    assert secret == {"name": mounted, "namespace": prod_graph.one(RELEASE, "observability").inputs["namespace"]}
    # alertmanagerSpec.secrets are mounted at /etc/alertmanager/secrets/<name>/ (prometheus-operator API docs).
    pagerduty = receivers["critical"]["pagerduty_configs"][0]
    assert pagerduty["routing_key_file"] == f"/etc/alertmanager/secrets/{mounted}/pagerdutyRoutingKey"
    slack = receivers["warning"]["slack_configs"][0]
    assert slack["api_url_file"] == f"/etc/alertmanager/secrets/{mounted}/slackWebhookUrl"
    assert slack["channel"] == "#llm-alerts"
    assert "offline-" not in json.dumps(prod_graph.one(RELEASE, "observability").inputs["values"])


def test_alertmanager_secret_exists_before_the_stack_that_mounts_it(prod_graph: Graph) -> None:
    secret = prod_graph.one("kubernetes:core/v1:Secret", "observability-alert-routing")
    assert waits_for(prod_graph, release_of(prod_graph, "kube-prometheus-stack"), secret)


def test_dev_says_it_routes_nowhere(dev_graph: Graph) -> None:
    values = alertmanager_values(dev_graph)
    assert all(set(r) == {"name"} for r in values["config"]["receivers"])  # null receivers only
    assert "secrets" not in values["alertmanagerSpec"]
    assert "observability-alert-routing" not in {r.name for r in dev_graph.of_type("kubernetes:core/v1:Secret")}
    stack_file = (Path(__file__).resolve().parent.parent / "Pulumi.dev.yaml").read_text()
    assert "kind: none" in stack_file


def test_rollouts_inhibit_only_warnings() -> None:
    rules = alertmanager_config(AlertingConfig())["inhibit_rules"]
    (rollout,) = [r for r in rules if 'alertname = "LlmRolloutInProgress"' in r["source_matchers"]]
    assert 'severity = "warning"' in rollout["target_matchers"]
    assert not any("critical" in matcher for matcher in rollout["target_matchers"])


def test_webhook_receiver_sends_its_token_from_the_secret(tmp_path: Path) -> None:
    config = AlertingConfig.model_validate({
        "critical": {"kind": "webhook", "url": "https://oncall.example.com/hooks/llm"},
        "warning": {"kind": "none"},
        "secretId": "team/alerting",
    })
    rendered = alertmanager_config(config)
    path = write_config(rendered, tmp_path)
    assert "SUCCESS" in amtool("check-config", path, cwd=tmp_path)
    (webhook,) = rendered["receivers"][1]["webhook_configs"]
    assert webhook["http_config"]["authorization"]["credentials_file"].endswith("/webhookToken")
    assert _needed_keys('{"webhookToken": "t", "other": "x"}', config) == {"webhookToken": "t"}
    with pytest.raises(ValueError, match="lacks the key"):
        _needed_keys('{"slackWebhookUrl": "u"}', config)


@pytest.mark.parametrize(
    ("stack", "alerting", "message"),
    [
        ("prod", {"critical": {"kind": "none"}}, "addons.alerting.critical.kind is none in a prod stack"),
        ("dev", {"critical": {"kind": "slack"}, "secretId": None}, "secretId is required"),
        ("dev", {"critical": {"kind": "pagerduty", "channel": "#x"}, "secretId": "s"}, "channel applies to"),
        ("dev", {"warning": {"kind": "webhook"}, "secretId": "s"}, "url is required"),
        ("dev", {"warning": {"kind": "email"}}, "addons.alerting.warning.kind"),
    ],
)
def test_bad_alerting_config_names_the_key(stack: str, alerting: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        # A prod stack must also say who deploys (publicAccessCidrs); only the alerting is wrong here.
        cluster = {"publicAccessCidrs": ["198.18.0.0/24"]} if stack == "prod" else {}
        validate(stack, {"addons": {"alerting": alerting}, "cluster": cluster}, "Pulumi.test.yaml")
