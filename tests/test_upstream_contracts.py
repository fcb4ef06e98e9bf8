"""The program against the upstream facts recorded in components/upstream/ (scripts/refresh-upstream.py): chart
coordinates the provider can pull, the reference IAM policies, EKS AMI releases, vLLM's flags and quantization
methods. Each check is also run on a mutated copy of the facts, to show it would catch that change upstream."""

import copy
import json
from typing import Any, get_args

import pytest
import yaml

from components import upstream, versions
from components.karpenter import INTERRUPTION_EVENTS
from components.vllm import Quantization, VllmConfig, vllm_arguments
from infra.mocks import ACCOUNT_ID
from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
FACT_FILES = ("charts", "karpenter-controller-policy", "lb-controller-iam-policy", "eks-ami", "vllm", "images", "aws")


def _sources(data: Any) -> list[dict[str, Any]]:
    """Every `source` record anywhere in a facts file."""
    if isinstance(data, dict):
        found = [data["source"]] if isinstance(data.get("source"), dict) else []
        return found + [s for key, value in data.items() if key != "source" for s in _sources(value)]
    return [s for item in data for s in _sources(item)] if isinstance(data, list) else []


@pytest.mark.parametrize("name", FACT_FILES)
def test_every_facts_file_names_its_source_and_check_date(name: str) -> None:
    data = upstream.facts(name)
    assert data["checked"] == "2026-11-30"
    sources = _sources(data)
    assert sources and all(s.get("url") or s.get("package") for s in sources), f"{name}: a fact without its source"


def test_every_pin_has_recorded_facts_at_its_version() -> None:
    charts = upstream.facts("charts")["charts"]
    for chart in (value for value in vars(versions).values() if isinstance(value, versions.HelmChart)):
        assert chart.version in charts[chart.name]["versions"], f"{chart.name} {chart.version} not recorded"
    assert upstream.facts("karpenter-controller-policy")["version"] == versions.KARPENTER.version
    lbc = upstream.facts("lb-controller-iam-policy")
    assert lbc["chartVersion"] == versions.AWS_LOAD_BALANCER_CONTROLLER.version
    assert lbc["appVersion"] == charts[versions.AWS_LOAD_BALANCER_CONTROLLER.name]["appVersion"]
    assert upstream.facts("vllm")["version"] == versions.VLLM_VERSION
    assert f"vllm/vllm-openai:v{upstream.facts('vllm')['version']}" == versions.VLLM_IMAGE
    assert upstream.facts("images")["images"][versions.VLLM_IMAGE]["exists"] is True
    assert upstream.facts("images")["images"][versions.PAUSE_IMAGE]["exists"] is True


def test_aws_service_versions_are_offered() -> None:
    aws = upstream.facts("aws")
    assert versions.ELASTICACHE_REDIS_VERSION in aws["elasticacheRedis"]["engineVersions"]
    # Kubernetes versions: tests/test_kubernetes_version.py (offered, and in standard support 60 days on).


# --- Helm charts -------------------------------------------------------------------------------------------------

def test_every_release_uses_the_recorded_chart_coordinates(graph: Graph) -> None:
    recorded = upstream.charts()
    problems = [f"{r.urn}: {p}" for r in graph.of_type(RELEASE) for p in upstream.release_problems(r.inputs, recorded)]
    assert problems == []


def test_karpenter_charts_are_pulled_as_oci_references(graph: Graph) -> None:
    for name in ("karpenter", "karpenter-crd"):
        release = graph.one(RELEASE, name).inputs
        assert release["chart"] == f"oci://public.ecr.aws/karpenter/{name}", release
        assert "repositoryOpts" not in release


def test_release_checker_reports_an_oci_registry_given_as_repository() -> None:
    # How main declared Karpenter: pulumi-kubernetes then looks for an index.yaml and fails (#2158).
    as_repo = {"chart": "karpenter", "version": "1.14.1", "repositoryOpts": {"repo": "oci://public.ecr.aws/karpenter"}}
    problems = upstream.release_problems(as_repo, upstream.charts())
    assert any("oci://public.ecr.aws/karpenter/karpenter" in p for p in problems)
    assert any("no repositoryOpts" in p for p in problems)


def test_release_checker_reports_a_version_or_repository_upstream_does_not_have() -> None:
    data = upstream.facts("charts")
    keda = {"chart": "keda", "version": versions.KEDA.version, "repositoryOpts": {"repo": versions.KEDA.repository}}
    assert upstream.release_problems(keda, upstream.charts(data)) == []
    data["charts"]["keda"]["versions"] = ["2.19.0"]
    data["charts"]["keda"]["repo"] = "https://example.org/charts"
    assert len(upstream.release_problems(keda, upstream.charts(data))) == 2


def _effective_values(defaults: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, later sources win, a null removes the key."""
    merged = copy.deepcopy(defaults)
    for override in overrides:
        for key, value in override.items():
            if value is None:
                merged.pop(key, None)
            elif isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _effective_values(merged[key], value)
            else:
                merged[key] = value
    return merged


def test_keda_pods_run_without_the_charts_cpu_limit(graph: Graph) -> None:
    release = graph.one(RELEASE, "keda").inputs
    files = [yaml.safe_load(asset["text"]) for asset in release.get("valueYamlFiles") or []]
    defaults = upstream.facts("charts")["charts"]["keda"]["defaults"]
    assert defaults["resources"]["operator"]["limits"]["cpu"], "the recorded chart default has a CPU limit"
    resources = _effective_values(defaults, *files, release["values"])["resources"]
    for pod in ("operator", "metricServer", "webhooks"):
        assert "cpu" not in resources[pod]["limits"], f"{graph.stack} keda {pod}: {resources[pod]}"
        assert resources[pod]["requests"]["cpu"], f"{graph.stack} keda {pod} keeps a CPU request"


# --- Karpenter controller policy ---------------------------------------------------------------------------------

def _role_policy(graph: Graph, name: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = json.loads(
        graph.one("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"]
    )["Statement"]
    return statements


def _karpenter_reference(graph: Graph, data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    ours = {s["Sid"]: s for s in _role_policy(graph, "karpenter-controller")}
    return upstream.karpenter_reference_policy(
        cluster_name=graph.outputs["clusterName"],
        region=graph.config.region,
        account_id=ACCOUNT_ID,
        queue_arn=ours["AllowInterruptionQueueActions"]["Resource"],
        node_role_arn=graph.outputs["karpenterNodeRoleArn"],
        data=data,
    )


def test_karpenter_controller_policy_covers_the_reference_policy(graph: Graph) -> None:
    assert upstream.policy_gaps(_karpenter_reference(graph), _role_policy(graph, "karpenter-controller")) == []


def test_karpenter_health_checks_can_read_instance_status(graph: Graph) -> None:
    actions = {a for s in _role_policy(graph, "karpenter-controller") for a in upstream.as_list(s["Action"])}
    assert "ec2:DescribeInstanceStatus" in actions


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: p["ResourceDiscoveryPolicy"][0]["Action"].append("ec2:DescribeHosts"), id="action"),
        pytest.param(lambda p: p["NodeLifecyclePolicy"][0]["Resource"].append("arn:aws:ec2:*:*:host/*"), id="res"),
        pytest.param(lambda p: p.setdefault("NewPolicy", []).append(
            {"Sid": "AllowNew", "Effect": "Allow", "Action": "ec2:DescribeHosts", "Resource": "*"}), id="statement"),
        pytest.param(lambda p: p["IAMIntegrationPolicy"][0]["Condition"]["StringEquals"].update(
            {"aws:RequestTag/extra": "x"}), id="condition"),
    ],
)
def test_policy_check_reports_a_changed_reference(prod_graph: Graph, mutate: Any) -> None:
    data = upstream.facts("karpenter-controller-policy")
    mutate(data["policies"])
    ours = _role_policy(prod_graph, "karpenter-controller")
    assert upstream.policy_gaps(_karpenter_reference(prod_graph, data), ours)


def test_policy_check_reports_a_condition_looser_than_the_reference(prod_graph: Graph) -> None:
    ours = copy.deepcopy(_role_policy(prod_graph, "karpenter-controller"))
    (pass_role,) = [s for s in ours if s["Action"] == "iam:PassRole"]
    pass_role["Condition"]["StringEquals"]["iam:PassedToService"] = ["ec2.amazonaws.com", "lambda.amazonaws.com"]
    assert upstream.policy_gaps(_karpenter_reference(prod_graph), ours) == [
        f"AllowPassingInstanceRole: iam:PassRole on {prod_graph.outputs['karpenterNodeRoleArn']} is not granted as "
        "the reference does",
        "AllowPassingInstanceRole: condition StringEquals iam:PassedToService allows "
        "['ec2.amazonaws.com', 'lambda.amazonaws.com'], reference only ['ec2.amazonaws.com', 'ec2.amazonaws.com.cn']",
    ]


def test_pass_role_stays_on_the_node_role_and_ec2(graph: Graph) -> None:
    (pass_role,) = [s for s in _role_policy(graph, "karpenter-controller") if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == graph.outputs["karpenterNodeRoleArn"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_interruption_rules_are_the_reference_templates_rules() -> None:
    recorded = upstream.facts("karpenter-controller-policy")["interruptionEvents"]
    assert sorted(map(json.dumps, INTERRUPTION_EVENTS.values())) == sorted(map(json.dumps, recorded))


# --- AWS Load Balancer Controller policy -------------------------------------------------------------------------

def test_lb_controller_policy_grants_the_upstream_iam_policy_json_and_no_more(graph: Graph) -> None:
    recorded = upstream.facts("lb-controller-iam-policy")["policy"]["Statement"]
    ours = _role_policy(graph, "edge-lb-controller")
    assert upstream.policy_gaps(recorded, ours) == []
    assert upstream.extra_actions(recorded, ours) == []


def test_lb_policy_check_reports_what_changed_upstream(prod_graph: Graph) -> None:
    ours = _role_policy(prod_graph, "edge-lb-controller")
    recorded = upstream.facts("lb-controller-iam-policy")["policy"]["Statement"]
    recorded[1]["Action"].append("ec2:DescribeHosts")
    recorded[5]["Condition"]["Null"]["aws:RequestTag/elbv2.k8s.aws/owner"] = "false"
    assert upstream.policy_gaps(recorded, ours) == [
        "statement 1: ec2:DescribeHosts on * is not granted as the reference does",
        "statement 5: ec2:CreateTags on arn:aws:ec2:*:*:security-group/* is not granted as the reference does",
    ]
    recorded[1]["Action"].remove("ec2:DescribeInstances")
    assert upstream.extra_actions(recorded, ours) == ["ec2:DescribeInstances"]


# --- EKS AMIs ----------------------------------------------------------------------------------------------------

def _aliases(graph: Graph) -> dict[str, str]:
    return {
        r.name: r.inputs["spec"]["amiSelectorTerms"][0]["alias"] for r in graph.of_type(NODE_CLASS)
    }


def test_prod_pins_recorded_ami_releases_for_gpu_and_cpu(prod_graph: Graph) -> None:
    aliases = _aliases(prod_graph)
    assert set(aliases) == {"node-pools-gpu-ec2nodeclass", "node-pools-cpu-ec2nodeclass"}
    assert [p for alias in aliases.values() for p in upstream.ami_alias_problems(alias, allow_latest=False)] == []


def test_dev_follows_latest_or_a_recorded_release(dev_graph: Graph) -> None:
    assert [p for a in _aliases(dev_graph).values() for p in upstream.ami_alias_problems(a, allow_latest=True)] == []


def test_ami_check_reports_a_date_that_is_no_release() -> None:
    # main's prod pin: a date from a changelog, not an awslabs/amazon-eks-ami release tag.
    assert upstream.ami_alias_problems("al2023@v20251117", allow_latest=False)
    assert upstream.ami_alias_problems("al2023@latest", allow_latest=False)
    data = upstream.facts("eks-ami")
    pinned = versions.CPU_AMI_ALIAS_PROD.split("@")[1]
    data["releaseTags"].remove(pinned)
    del data["pinnedReleases"][pinned]
    assert upstream.ami_alias_problems(versions.CPU_AMI_ALIAS_PROD, allow_latest=False, data=data)


def test_bottlerocket_check_wants_a_recorded_release_with_the_kubernetes_variants() -> None:
    # v1.69.0 was still a pre-release when checked: not recorded, so not pinnable.
    assert upstream.ami_alias_problems("bottlerocket@v1.69.0", allow_latest=False)
    data = upstream.facts("bottlerocket")
    (pinned,) = data["release"]["recordedReleases"]
    data["release"]["recordedReleases"][pinned]["variants"].remove("aws-k8s-1.35-nvidia")
    assert upstream.ami_alias_problems(f"bottlerocket@{pinned}", allow_latest=False, data=data) == [
        f"bottlerocket@{pinned}: no aws-k8s-1.35-nvidia variant recorded"
    ]


@pytest.mark.parametrize("alias", [versions.CPU_AMI_ALIAS_PROD])
def test_pinned_release_has_nvidia_and_standard_amis_for_every_allowed_kubernetes(alias: str) -> None:
    release = alias.split("@")[1]
    amis = upstream.facts("eks-ami")["pinnedReleases"][release]["amis"]
    for kubernetes in versions.SUPPORTED_KUBERNETES_VERSIONS:
        assert sorted(amis[kubernetes]) == [
            f"amazon-eks-node-al2023-x86_64-{kind}-{kubernetes}-{release}" for kind in ("nvidia", "standard")
        ]


# --- vLLM --------------------------------------------------------------------------------------------------------

def _container_args(graph: Graph) -> list[str]:
    (container,) = graph.one("kubernetes:apps/v1:Deployment", "vllm-deployment").inputs["spec"]["template"]["spec"][
        "containers"
    ]
    args: list[str] = container["args"]
    return args


def test_vllm_deployment_passes_only_flags_of_the_pinned_vllm(graph: Graph) -> None:
    assert upstream.vllm_flag_problems(_container_args(graph)) == []


def test_every_optional_vllm_flag_is_a_flag_of_the_pinned_vllm() -> None:
    config = VllmConfig(model_source="s3", model="models/m/1/", quantization="awq_marlin", enable_prefix_caching=False)
    assert upstream.vllm_flag_problems(vllm_arguments(config, "s3://bucket/models/m/1/")) == []


def test_vllm_flag_check_reports_renames_and_abbreviations(prod_graph: Graph) -> None:
    assert upstream.vllm_flag_problems(["--max-num-seq", "8"]) == ["--max-num-seq: not a flag of vllm 0.33.0"]
    data = upstream.facts("vllm")
    data["flags"] = [flag.replace("--shutdown-timeout", "--graceful-shutdown-timeout") for flag in data["flags"]]
    assert upstream.vllm_flag_problems(_container_args(prod_graph), data) == [
        "--shutdown-timeout: not a flag of vllm 0.33.0"
    ]


def test_quantization_choices_are_methods_the_pinned_vllm_accepts() -> None:
    assert set(get_args(Quantization)) <= upstream.vllm_quantization_methods()
    data = upstream.facts("vllm")
    data["quantizationMethods"].remove("awq_marlin")
    assert not set(get_args(Quantization)) <= upstream.vllm_quantization_methods(data)
