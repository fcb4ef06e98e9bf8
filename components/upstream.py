"""Recorded upstream facts (components/upstream/*.json, written by scripts/refresh-upstream.py) and the checks
that hold the program to them: chart coordinates, the reference IAM policies, EKS AMI releases, vLLM's flags,
the Kubernetes versions EKS offers and supports (and what Karpenter and the charts accept).

Each file names its source (repository, path, ref or URL) and the date it was checked. Checks return a list of
problems, one line each, empty when the program agrees with upstream.
"""

import datetime
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from components.versions import SUPPORTED_KUBERNETES_VERSIONS

FACTS_DIR = Path(__file__).resolve().parent / "upstream"

Statement = dict[str, Any]


@cache
def _text(name: str) -> str:
    return (FACTS_DIR / f"{name}.json").read_text()


def facts(name: str) -> dict[str, Any]:
    """One facts file as data, a fresh copy each call (tests mutate theirs)."""
    return dict(json.loads(_text(name)))


@dataclass(frozen=True)
class ChartFact:
    form: str  # "oci" or "index"
    chart: str  # what the provider's `chart` must be: the oci:// reference, or the name in the index
    repo: str | None  # index repository URL; None for OCI
    versions: tuple[str, ...]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "ChartFact":
        return cls(data["form"], data["chart"], data.get("repo"), tuple(data["versions"]))


def charts(data: dict[str, Any] | None = None) -> dict[str, ChartFact]:
    """Recorded chart coordinates by chart name."""
    data = data if data is not None else facts("charts")
    return {name: ChartFact.of(chart) for name, chart in data["charts"].items()}


def release_problems(release: dict[str, Any], recorded: dict[str, ChartFact]) -> list[str]:
    """What in a `helm.v3.Release`'s inputs the provider could not pull as recorded upstream."""
    chart, version = release.get("chart", ""), release.get("version")
    name = chart.rsplit("/", 1)[-1]
    fact = recorded.get(name)
    if fact is None:
        return [f"chart {chart!r}: no recorded upstream facts (run scripts/refresh-upstream.py)"]
    problems = []
    if chart != fact.chart:
        problems.append(f"chart {chart!r}: upstream publishes it as {fact.chart!r} ({fact.form})")
    repo = (release.get("repositoryOpts") or {}).get("repo")
    if fact.form == "oci" and repo is not None:
        problems.append(f"chart {chart!r}: an OCI chart takes no repositoryOpts (got repo {repo!r})")
    if fact.form == "index" and repo != fact.repo:
        problems.append(f"chart {chart!r}: repositoryOpts.repo is {repo!r}, upstream index is {fact.repo!r}")
    if version not in fact.versions:
        problems.append(f"chart {chart!r}: version {version} is not a recorded release ({', '.join(fact.versions)})")
    return problems


def as_list(value: Any) -> list[Any]:
    """An IAM field that may be one value or a list of them, as a list."""
    return value if isinstance(value, list) else [value]


def _substitute(value: Any, placeholders: dict[str, str]) -> Any:
    text = json.dumps(value)
    for name, replacement in placeholders.items():
        text = text.replace("${" + name + "}", replacement)
    return json.loads(text)


def karpenter_reference_policy(
    cluster_name: str, region: str, account_id: str, queue_arn: str, node_role_arn: str,
    data: dict[str, Any] | None = None,
) -> list[Statement]:
    """The reference template's controller statements (all its managed policies) for one cluster."""
    data = data if data is not None else facts("karpenter-controller-policy")
    placeholders = {
        "AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account_id, "ClusterName": cluster_name,
        "KarpenterNodeRole.Arn": node_role_arn, "KarpenterInterruptionQueue.Arn": queue_arn,
    }
    statements = [statement for policy in data["policies"].values() for statement in policy]
    return list(_substitute(statements, placeholders))


def _condition_problems(sid: str, reference: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Ours must test every key the reference tests, with the same operator and no value the reference lacks
    (it may test more keys: tighter scoping)."""
    problems = []
    for operator, tests in reference.items():
        for key, allowed in tests.items():
            mine = ours.get(operator, {}).get(key)
            if mine is None:
                problems.append(f"{sid}: condition {operator} {key} missing")
            elif not set(as_list(mine)) <= set(as_list(allowed)):
                problems.append(f"{sid}: condition {operator} {key} allows {mine}, reference only {allowed}")
    return problems


def _grants(statement: Statement, action: str, reference: Statement, label: str) -> bool:
    """Whether `statement` allows `action` on exactly the reference's resources, under conditions at least as
    tight as the reference's."""
    return (
        statement.get("Effect") == reference.get("Effect")
        and action in as_list(statement["Action"])
        and sorted(as_list(statement["Resource"])) == sorted(as_list(reference["Resource"]))
        and not _condition_problems(label, reference.get("Condition", {}), statement.get("Condition", {}))
    )


def policy_gaps(reference: list[Statement], ours: list[Statement]) -> list[str]:
    """Each action of each reference statement that no statement of ours grants on the same resources under
    conditions at least as tight (ours may add conditions: tighter scoping). Statements are named by Sid, or by
    their position in the reference when it has none; with a Sid, the condition that differs is named."""
    by_sid = {statement.get("Sid"): statement for statement in ours if statement.get("Sid")}
    problems = []
    for index, statement in enumerate(reference):
        label = statement.get("Sid") or f"statement {index}"
        for action in as_list(statement["Action"]):
            if not any(_grants(mine, action, statement, label) for mine in ours):
                problems.append(f"{label}: {action} on {statement['Resource']} is not granted as the reference does")
        if label in by_sid:
            problems += _condition_problems(label, statement.get("Condition", {}), by_sid[label].get("Condition", {}))
    return problems


def extra_actions(reference: list[Statement], ours: list[Statement]) -> list[str]:
    """Actions ours grants that the reference never does."""
    allowed = {action for statement in reference for action in as_list(statement["Action"])}
    return sorted({action for statement in ours for action in as_list(statement["Action"])} - allowed)


def ami_release_tags(data: dict[str, Any] | None = None) -> set[str]:
    data = data if data is not None else facts("eks-ami")
    return set(data["releaseTags"]) | set(data["pinnedReleases"])


def bottlerocket_alias_problems(version: str, data: dict[str, Any] | None = None) -> list[str]:
    """A Bottlerocket release recorded with the aws-k8s-<version> and -nvidia variants Karpenter resolves, for every
    Kubernetes version the stack accepts."""
    data = data if data is not None else facts("bottlerocket")
    release = data["release"]["recordedReleases"].get(version)
    if release is None:
        return [f"bottlerocket@{version}: not a recorded bottlerocket-os/bottlerocket release"]
    wanted = {f"aws-k8s-{k8s}{kind}" for k8s in SUPPORTED_KUBERNETES_VERSIONS for kind in ("", "-nvidia")}
    missing = sorted(wanted - set(release["variants"]))
    return [f"bottlerocket@{version}: no {variant} variant recorded" for variant in missing]


def ami_alias_problems(alias: str, allow_latest: bool, data: dict[str, Any] | None = None) -> list[str]:
    """An alias `family@version`: `latest` where allowed, else a recorded EKS AMI (or Bottlerocket) release with
    AMIs for the pinned Kubernetes version."""
    family, version = alias.split("@", 1)
    if version == "latest":
        return [] if allow_latest else [f"{alias}: follows the latest release where a pinned release is required"]
    if family == "bottlerocket":
        return bottlerocket_alias_problems(version, data)
    data = data if data is not None else facts("eks-ami")
    if version not in ami_release_tags(data):
        return [f"{alias}: {version} is not a recorded awslabs/amazon-eks-ami release"]
    if alias.startswith("al2023@") and not any(data["pinnedReleases"].get(version, {}).get("amis", {}).values()):
        return [f"{alias}: no AL2023 AMIs recorded for release {version}"]
    return []


def vllm_quantization_methods(data: dict[str, Any] | None = None) -> set[str]:
    data = data if data is not None else facts("vllm")
    return set(data["quantizationMethods"])


def vllm_flag_problems(args: list[str], data: dict[str, Any] | None = None) -> list[str]:
    """Flags in `vllm serve` arguments that the pinned vLLM's parser does not define by exactly that name
    (argparse accepts an abbreviation silently; a renamed flag stops the pod), or keeps only for backwards
    compatibility or as deprecated."""
    data = data if data is not None else facts("vllm")
    retired = set(data["hiddenFlags"]) | set(data["deprecatedFlags"])
    problems = []
    for flag in (arg.split("=", 1)[0] for arg in args if arg.startswith("--")):
        if flag not in data["flags"]:
            problems.append(f"{flag}: not a flag of vllm {data['version']}")
        elif flag in retired:
            problems.append(f"{flag}: kept by vllm {data['version']} only for backwards compatibility")
    return problems


# --- Kubernetes versions -----------------------------------------------------------------------------------------

def eks_version_problems(version: str, on: datetime.date, horizon_days: int = 0,
                         data: dict[str, Any] | None = None) -> list[str]:
    """Why EKS would not run `version` in standard support from `on` for `horizon_days` more days (empty when it
    would): not offered (no recorded release date), or standard support ends first, after which AWS bills
    extended support."""
    data = data if data is not None else facts("aws")
    recorded = data["eks"]["versions"].get(version) or {}
    if not recorded.get("released"):
        return [f"Kubernetes {version}: not recorded as offered by EKS (components/upstream/aws.json)"]
    end = datetime.date.fromisoformat(recorded["endOfStandardSupport"])
    until = on + datetime.timedelta(days=horizon_days)
    if end < until:
        return [f"Kubernetes {version}: EKS standard support ends {end}, before {until} (extended support bills)"]
    return []


def in_extended_support(version: str, on: datetime.date, data: dict[str, Any] | None = None) -> bool:
    """Whether EKS bills `version` at the extended-support rate on `on` (a version not recorded: no)."""
    data = data if data is not None else facts("aws")
    end = (data["eks"]["versions"].get(version) or {}).get("endOfStandardSupport")
    return end is not None and on > datetime.date.fromisoformat(end)


def version_key(version: str) -> tuple[int, ...]:
    """A version's leading numbers (`v1.23.0-0` -> (1, 23, 0)), to compare or sort by."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def kube_version_allows(constraint: str | None, version: str) -> bool:
    """Whether a Chart.yaml `kubeVersion` admits Kubernetes `version`. Only the lower-bound form our charts use
    (`>= 1.25.0-0`) is understood; any other constraint counts as not admitting, so a new one gets read."""
    if constraint is None:
        return True
    bound = re.fullmatch(r">=\s*v?(\d+\.\d+(?:\.\d+)?)(?:-0)?", constraint.strip())
    return bound is not None and version_key(version) >= version_key(bound.group(1))


def karpenter_supports(kubernetes: str, karpenter: str, data: dict[str, Any] | None = None) -> bool:
    """Whether Karpenter `karpenter` supports Kubernetes `kubernetes` per the recorded compatibility matrix."""
    data = data if data is not None else facts("karpenter-compatibility")
    minimum = data["minimumKarpenter"].get(kubernetes)
    return minimum is not None and version_key(karpenter) >= version_key(minimum)
