"""Alert routing: Alertmanager receivers per severity, built from stack config, with their credentials read from
AWS Secrets Manager at deploy time and never written in the stack file.

The user creates one Secrets Manager secret (a JSON object) before `pulumi up` and names it in
`addons.alerting.secretId`; the program reads it (`secretsmanager:GetSecretValue` by the deploying identity) and
writes the needed keys into a Kubernetes Secret that Alertmanager mounts (alertmanagerSpec.secrets ->
/etc/alertmanager/secrets/<name>/<key>) and reads through `*_file` settings, so the values stay out of the
Alertmanager config and out of Helm values. Pulumi state keeps them encrypted (secret outputs). Rotating a key is
`aws secretsmanager put-secret-value` then `pulumi up`.

Keys of kube-prometheus-stack 82.18.0 values.yaml used here: alertmanager.config, alertmanager.alertmanagerSpec
.secrets. Alertmanager settings (checked with amtool 0.25 in the tests; the chart runs 0.31.1): slack_configs
.api_url_file, pagerduty_configs.routing_key_file, webhook_configs.http_config.authorization.credentials_file.
"""

import json
from typing import Any, Literal, Self

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field, HttpUrl, model_validator

from components.config_base import StrictModel

ROUTING_SECRET = "alert-routing"
SECRET_DIR = f"/etc/alertmanager/secrets/{ROUTING_SECRET}"
# Key in the Secrets Manager JSON each receiver kind needs.
SECRET_KEYS = {"slack": "slackWebhookUrl", "pagerduty": "pagerdutyRoutingKey", "webhook": "webhookToken"}
# Active while a serving Deployment replaces pods (components/slo.py defines its rule).
ROLLOUT_ALERT = "LlmRolloutInProgress"
# Warnings a rollout of vLLM or the gateway causes for a few minutes (pods draining, a new pod loading its model);
# critical alerts still page during a rollout, so a bad release is never hidden.
ROLLOUT_TRANSIENT = ("LlmGatewayHighErrorRate", "LlmGatewayP95LatencyHigh", "LlmVllmQueueDeep", "LlmTtftBudgetBurnSlow")


class Receiver(StrictModel):
    kind: Literal["none", "slack", "pagerduty", "webhook"]
    channel: str | None = Field(default=None, pattern=r"^[#@]?[a-z0-9._-]+$", description="Slack channel override.")
    url: HttpUrl | None = Field(default=None, description="Webhook URL; its bearer token is in the secret.")

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if (self.kind == "webhook") != (self.url is not None):
            raise ValueError("url is required for kind webhook and only for it")
        if self.channel and self.kind != "slack":
            raise ValueError("channel applies to kind slack only")
        return self


class AlertingConfig(StrictModel):
    critical: Receiver = Field(default_factory=lambda: Receiver(kind="none"), description="Pages: act now.")
    warning: Receiver = Field(default_factory=lambda: Receiver(kind="none"), description="Tickets: act today.")
    secret_id: str | None = Field(
        default=None, min_length=1,
        description="Secrets Manager secret (name or ARN), a JSON object with the receivers' keys "
        f"({', '.join(SECRET_KEYS.values())}); created by you before `pulumi up`.",
    )

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.secret_kinds and not self.secret_id:
            raise ValueError(f"secretId is required for receivers of kind {', '.join(sorted(self.secret_kinds))}")
        return self

    @property
    def secret_kinds(self) -> set[str]:
        return {r.kind for r in (self.critical, self.warning) if r.kind != "none"}

    @property
    def routes_nowhere(self) -> bool:
        return not self.secret_kinds


def _receiver(name: str, receiver: Receiver) -> dict[str, Any]:
    key_file = f"{SECRET_DIR}/{SECRET_KEYS.get(receiver.kind, '')}"
    if receiver.kind == "slack":
        slack: dict[str, Any] = {"api_url_file": key_file, "send_resolved": True}
        if receiver.channel:
            slack["channel"] = receiver.channel
        return {"name": name, "slack_configs": [slack]}
    if receiver.kind == "pagerduty":
        return {"name": name, "pagerduty_configs": [{"routing_key_file": key_file, "send_resolved": True}]}
    if receiver.kind == "webhook":
        authorization = {"type": "Bearer", "credentials_file": key_file}
        return {
            "name": name,
            "webhook_configs": [
                {"url": str(receiver.url), "send_resolved": True, "http_config": {"authorization": authorization}}
            ],
        }
    return {"name": name}


def alertmanager_config(config: AlertingConfig) -> dict[str, Any]:
    """Severity routes (critical pages hourly, warnings twice a day), the chart's Watchdog kept on `null`, and
    inhibitions: a critical alert silences its warning twin, and a rollout silences the warnings it causes."""
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null",
            "group_by": ["alertname", "namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": [
                {"receiver": "null", "matchers": ['alertname = "Watchdog"']},
                {"receiver": "null", "matchers": [f'alertname = "{ROLLOUT_ALERT}"']},
                {"receiver": "critical", "matchers": ['severity = "critical"'], "repeat_interval": "1h"},
                {"receiver": "warning", "matchers": ['severity = "warning"']},
            ],
        },
        "receivers": [
            {"name": "null"}, _receiver("critical", config.critical), _receiver("warning", config.warning)
        ],
        "inhibit_rules": [
            {
                "source_matchers": ['severity = "critical"'],
                "target_matchers": ['severity = "warning"'],
                "equal": ["alertname", "namespace"],
            },
            {
                "source_matchers": [f'alertname = "{ROLLOUT_ALERT}"'],
                "target_matchers": ['severity = "warning"', f'alertname =~ "{"|".join(ROLLOUT_TRANSIENT)}"'],
            },
        ],
    }


def with_alerting(values: dict[str, Any], config: AlertingConfig) -> dict[str, Any]:
    """kube-prometheus-stack values with the Alertmanager config and the routing secret mounted."""
    alertmanager = values.get("alertmanager", {})
    spec = {**alertmanager.get("alertmanagerSpec", {})}
    if not config.routes_nowhere:
        spec["secrets"] = [ROUTING_SECRET]
    return {**values, "alertmanager": {**alertmanager, "config": alertmanager_config(config), "alertmanagerSpec": spec}}


def _needed_keys(secret_string: str, config: AlertingConfig) -> dict[str, str]:
    document = json.loads(secret_string)
    needed = {SECRET_KEYS[kind] for kind in config.secret_kinds}
    missing = sorted(needed - set(document))
    if missing:
        raise ValueError(f"Secrets Manager secret {config.secret_id} lacks the key(s) {', '.join(missing)}")
    return {key: str(document[key]) for key in needed}


def routing_secret(
    name: str,
    config: AlertingConfig,
    namespace: str,
    opts: pulumi.ResourceOptions,
    aws_provider: pulumi.ProviderResource,
) -> k8s.core.v1.Secret | None:
    """The Kubernetes Secret Alertmanager mounts, filled from Secrets Manager when `pulumi up` runs."""
    if config.routes_nowhere:
        return None
    version = aws.secretsmanager.get_secret_version_output(
        secret_id=config.secret_id, opts=pulumi.InvokeOutputOptions(provider=aws_provider)
    )
    keys: Any = version.secret_string.apply(lambda text: _needed_keys(text, config))
    return k8s.core.v1.Secret(
        f"{name}-alert-routing",
        metadata={"name": ROUTING_SECRET, "namespace": namespace},
        string_data=pulumi.Output.secret(keys),
        opts=opts,
    )
