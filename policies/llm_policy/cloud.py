"""EKS control plane, network exposure and IAM.

EKS rules read both shapes of the cluster: offline, pulumi-eks is one `eks:index:Cluster` resource with its
own inputs (`endpointPublicAccess`, `encryptionConfigKeyArn`, ...); under the real engine the analyzer also sees
its child `aws:eks/cluster:Cluster` (`vpcConfig.endpointPublicAccess`, `encryptionConfig.provider.keyArn`, ...)
and the security groups and rules it creates.
"""

import json
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import parliament
import yaml
from parliament.cli import is_finding_filtered
from parliament.community_auditors import sensitive_access
from pulumi_policy import PolicyResource

from .common import (
    CRITICAL,
    HIGH,
    MEDIUM,
    WORLD,
    as_list,
    flag,
    get,
    has,
    items,
    json_document,
    linked,
    number,
    of_type,
    resource_rule,
    stack_rule,
    statements,
)

EKS_COMPONENT = "eks:index:Cluster"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_TYPES = (EKS_COMPONENT, EKS_CLUSTER)
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
SUBNET = "aws:ec2/subnet:Subnet"

# Documents that are IAM policies, by resource type and the property holding them.
POLICY_DOCUMENTS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
}
ROLE = "aws:iam/role:Role"
POLICY_ATTACHMENTS = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)
ADMIN_POLICIES = ("arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::aws:policy/IAMFullAccess")


def _eks(props: Mapping[str, Any], args: Any, component_key: str, *cluster_path: str) -> Any:
    """A cluster setting from whichever shape this resource has."""
    if args.resource_type == EKS_COMPONENT:
        return get(props, component_key)
    return get(props, *cluster_path)


def _eks_version(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    version = get(props, "version")
    supported = list(settings["supportedVersions"])
    if version is None:
        yield f"no Kubernetes version is pinned (AWS would pick its default); pin one of {supported}"
    elif str(version) not in supported:
        yield f"Kubernetes {version} is not in the supported versions {supported}"


def _eks_logging(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    enabled = {str(kind) for kind in items(get(props, "enabledClusterLogTypes"))}
    missing = [kind for kind in settings["requiredLogTypes"] if kind not in enabled]
    if missing:
        yield f"control-plane log types not sent to CloudWatch: {', '.join(missing)}"


def _eks_secrets_encryption(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if args.resource_type == EKS_COMPONENT:
        encrypted = has(props, "encryptionConfigKeyArn")
    else:
        config = get(props, "encryptionConfig")
        encrypted = has(config, "provider", "keyArn") and "secrets" in items(get(config, "resources"))
    if not encrypted:
        yield "Kubernetes secrets are not envelope-encrypted with a KMS key"


def _eks_endpoint(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    public = _eks(props, args, "endpointPublicAccess", "vpcConfig", "endpointPublicAccess")
    if public is not None and not flag(public):
        return
    if not settings["allowPublicEndpoint"]:
        yield "the API endpoint is public; this stack requires a private endpoint only"
        return
    cidrs = [str(c) for c in items(_eks(props, args, "publicAccessCidrs", "vpcConfig", "publicAccessCidrs"))]
    open_to = [cidr for cidr in cidrs if cidr in WORLD] or ([] if cidrs else ["0.0.0.0/0 (the default)"])
    if open_to:
        yield f"the public API endpoint is open to {', '.join(open_to)}; list your own CIDRs in publicAccessCidrs"


def _eks_auth_mode(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    mode = _eks(props, args, "authenticationMode", "accessConfig", "authenticationMode")
    allowed = list(settings["allowedModes"])
    if mode not in allowed:
        yield f"authentication mode is {mode or 'CONFIG_MAP (the default)'}, not one of {allowed}"


EKS_RULES = [
    resource_rule(
        "eks-supported-version",
        "The EKS cluster pins a Kubernetes version that is in standard support.",
        types=EKS_TYPES,
        severity=MEDIUM,
        remediation="Set cluster.kubernetesVersion to a supported version (components/versions.py).",
        check=_eks_version,
        # Mirrors SUPPORTED_KUBERNETES_VERSIONS in components/versions.py (AWS EKS standard support).
        config={"supportedVersions": {"type": "array", "items": {"type": "string"},
                                      "default": ["1.35"]}},
    ),
    resource_rule(
        "eks-control-plane-logging",
        "EKS control-plane logs (at least api, audit, authenticator) go to CloudWatch.",
        types=EKS_TYPES,
        severity=MEDIUM,
        remediation="Set enabled_cluster_log_types to include every required type.",
        check=_eks_logging,
        config={"requiredLogTypes": {"type": "array", "items": {"type": "string"},
                                     "default": ["api", "audit", "authenticator"]}},
    ),
    resource_rule(
        "eks-secrets-encryption",
        "Kubernetes secrets are envelope-encrypted with a KMS key.",
        types=EKS_TYPES,
        severity=HIGH,
        remediation="Pass encryption_config_key_arn (pulumi-eks) with a rotated KMS key (components/cluster.py).",
        check=_eks_secrets_encryption,
    ),
    resource_rule(
        "eks-endpoint-not-public",
        "The EKS API endpoint is never open to 0.0.0.0/0 or ::/0, and is private where the stack requires it.",
        types=EKS_TYPES,
        severity=CRITICAL,
        remediation="List your own ranges in cluster.publicAccessCidrs (or set cluster.publicEndpoint false when "
        "the stack is deployed from inside its VPC).",
        check=_eks_endpoint,
        # A private-only endpoint is reachable from inside the VPC alone: nothing is there on a first `pulumi up`.
        config={"allowPublicEndpoint": {"type": "boolean", "default": True,
                                        "description": "false for a stack deployed from inside its VPC"}},
    ),
    resource_rule(
        "eks-authentication-mode",
        "The EKS cluster authenticates through access entries (authenticationMode API), not the aws-auth ConfigMap.",
        types=EKS_TYPES,
        severity=MEDIUM,
        remediation="Set authentication_mode to API and grant access with access entries.",
        check=_eks_auth_mode,
        config={"allowedModes": {"type": "array", "items": {"type": "string"}, "default": ["API"]}},
    ),
]


def _ingress_entries(props: Mapping[str, Any], resource_type: str) -> list[dict[str, Any]]:
    """Every ingress permission of a security group or rule resource, as (protocol, ports, world CIDRs)."""
    if resource_type == SECURITY_GROUP:
        raw = items(get(props, "ingress"))
    elif resource_type == SECURITY_GROUP_RULE:
        raw = [props] if get(props, "type") == "ingress" else []
    else:
        raw = [{**{k: get(props, k) for k in ("fromPort", "toPort")}, "protocol": get(props, "ipProtocol"),
                "cidrBlocks": as_list(get(props, "cidrIpv4")), "ipv6CidrBlocks": as_list(get(props, "cidrIpv6"))}]
    entries = []
    for rule in raw:
        cidrs = [str(c) for c in items(get(rule, "cidrBlocks")) + items(get(rule, "ipv6CidrBlocks"))]
        entries.append({
            "protocol": str(get(rule, "protocol", default="")).lower(),
            "from": number(get(rule, "fromPort"), 0),
            "to": number(get(rule, "toPort"), 65535),
            "world": [cidr for cidr in cidrs if cidr in WORLD],
        })
    return entries


def _no_world_ingress(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    is_load_balancer = re.search(settings["loadBalancerPattern"], args.name or "", re.IGNORECASE) is not None
    allowed_ports = {float(port) for port in settings["loadBalancerPorts"]}
    for entry in _ingress_entries(props, args.resource_type):
        if not entry["world"]:
            continue
        all_ports = entry["protocol"] in ("-1", "all")
        single_port = entry["from"] == entry["to"] and not all_ports
        if is_load_balancer and single_port and entry["protocol"] == "tcp" and entry["from"] in allowed_ports:
            continue
        ports = "all ports" if all_ports else f"port {entry['from']:g}" if single_port else \
            f"ports {entry['from']:g}-{entry['to']:g}"
        yield f"ingress from {', '.join(entry['world'])} on {entry['protocol'] or 'tcp'} {ports}"


def _flow_logs(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for vpc in of_type(resources, VPC):
        logs = [log for log in of_type(resources, FLOW_LOG) if linked(log, vpc)]
        if not logs:
            yield f"VPC {vpc.name} has no flow log", vpc.urn
        for log in logs:
            if get(log.props, "trafficType") not in ("ALL", "REJECT"):
                yield f"flow log {log.name} records {get(log.props, 'trafficType')!r}, not ALL", log.urn


def _nat_per_az(resources: list[PolicyResource], settings: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    if not settings["required"]:
        return
    zones = {get(s.props, "availabilityZone") for s in of_type(resources, SUBNET)} - {None}
    nats = of_type(resources, NAT_GATEWAY)
    if len(nats) < len(zones):
        yield f"{len(nats)} NAT gateway(s) for {len(zones)} availability zones: losing one AZ cuts egress", None


NETWORK_RULES = [
    resource_rule(
        "sg-no-world-ingress",
        "No security group admits 0.0.0.0/0 or ::/0, except a load balancer's TCP 80/443.",
        types=(SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE),
        severity=CRITICAL,
        remediation="Allow traffic from a security group or the VPC CIDR instead; public traffic enters only "
        "through the ALB the load balancer controller manages.",
        check=_no_world_ingress,
        config={
            "loadBalancerPattern": {"type": "string", "default": r"(^|[-_])(alb|elb|nlb|lb|load-?balancer)([-_]|$)",
                                    "description": "Resource names of load balancer security groups"},
            "loadBalancerPorts": {"type": "array", "items": {"type": "number"}, "default": [80, 443]},
        },
    ),
    stack_rule(
        "vpc-flow-logs",
        "Every VPC records its flow logs (all traffic).",
        severity=MEDIUM,
        remediation="Add an aws.ec2.FlowLog with traffic_type ALL to a CloudWatch log group (components/network.py).",
        check=_flow_logs,
    ),
    stack_rule(
        "nat-per-az",
        "Where the stack requires it (prod), there is one NAT gateway per availability zone.",
        severity=MEDIUM,
        remediation="Set network.natGateways to per_az.",
        check=_nat_per_az,
        config={"required": {"type": "boolean", "default": True, "description": "false in dev"}},
    ),
]


def _documents(props: Mapping[str, Any], resource_type: str) -> list[dict[str, Any]]:
    if resource_type == ROLE:
        found = [json_document(get(policy, "policy")) for policy in items(get(props, "inlinePolicies"))]
    else:
        found = [json_document(get(props, POLICY_DOCUMENTS[resource_type]))]
    return [document for document in found if document is not None]


def _allows(statement: Mapping[str, Any], action: str) -> bool:
    """Whether an Allow statement's Action list grants `action` (wildcards expanded as IAM does)."""
    if statement.get("Effect") != "Allow" or "Action" not in statement:
        return False
    return any(
        re.fullmatch(re.escape(str(granted)).replace(r"\*", ".*"), action, re.IGNORECASE)
        for granted in as_list(statement["Action"])
    )


def _star_star(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    if args.resource_type in POLICY_ATTACHMENTS or args.resource_type == ROLE:
        arns = [get(props, "policyArn"), *items(get(props, "managedPolicyArns"))]
        for arn in arns:
            if arn in ADMIN_POLICIES:
                yield f"attaches {arn}"
    if args.resource_type in POLICY_ATTACHMENTS:
        return
    for document in _documents(props, args.resource_type):
        for statement in statements(document):
            actions = [str(a) for a in as_list(statement.get("Action"))]
            wide = [a for a in actions if a in ("*", "*:*")]
            if statement.get("Effect") == "Allow" and wide and "*" in as_list(statement.get("Resource")):
                yield f"statement {statement.get('Sid', '')!r} allows Action '*' on Resource '*'"


def _passrole(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for document in _documents(props, args.resource_type):
        for statement in statements(document):
            if not _allows(statement, "iam:PassRole"):
                continue
            label = f"statement {statement.get('Sid', '')!r}"
            wide = [str(r) for r in as_list(statement.get("Resource")) if "*" in str(r)]
            if wide or "NotResource" in statement:
                yield f"{label} allows iam:PassRole on {wide or 'NotResource'}: name the role ARNs"
            if settings["requirePassedToService"] and "iam:passedtoservice" not in str(
                statement.get("Condition", {})
            ).lower():
                yield f"{label} allows iam:PassRole without an iam:PassedToService condition"


PARLIAMENT_IGNORES = Path(__file__).resolve().parent.parent / "parliament.yaml"


@lru_cache(maxsize=1)
def _ignores() -> dict[str, list[dict[str, str]]]:
    """Community auditors on (their findings need their config), and our documented false positives."""
    parliament.override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")
    sensitive_access.audit = _sensitive_access
    loaded = yaml.safe_load(PARLIAMENT_IGNORES.read_text()) or {}
    return {issue: list(entry.get("ignore_locations", [])) for issue, entry in loaded.items()}


_audit_sensitive_access = sensitive_access.audit


def _sensitive_access(policy: Any) -> None:
    """The SENSITIVE_ACCESS auditor reports only on the resources its config lists (none by default), yet expands
    every allowed action first: about 10 s for `Action: *`. Run it only when it has something to look for."""
    if parliament.config.get("SENSITIVE_ACCESS", {}).get("resources"):
        _audit_sensitive_access(policy)


def _ignored(finding: Any) -> bool:
    """parliament's `ignore_locations` semantics (every key fully matches the finding's location), applied here:
    parliament 1.6.4 drops locations given in a YAML file (misc.make_list only accepts jsoncfg nodes)."""
    return any(
        all(re.fullmatch(str(pattern), str(finding.location.get(key, "")), re.IGNORECASE)
            for key, pattern in location.items())
        for location in _ignores().get(finding.issue, [])
    )


@lru_cache(maxsize=256)
def _parliament_findings(document: str, name: str, minimum: str) -> tuple[str, ...]:
    _ignores()
    policy = parliament.analyze_policy_string(document, filepath=name, include_community_auditors=True)
    grouped: dict[str, list[str]] = {}
    for finding in map(parliament.enhance_finding, policy.findings):
        if not is_finding_filtered(finding, minimum) and not _ignored(finding):
            heading = f"{finding.issue} ({finding.severity}): {finding.title}"
            detail = finding.detail or finding.location.get("type") or ""
            grouped.setdefault(heading, []).append(str(detail))
    # One message per kind of finding: `Action: *` alone raises PRIVILEGE_ESCALATION once per escalation path.
    return tuple(
        heading + (f" [{'; '.join(sorted(set(d for d in details if d)))[:400]}]" if any(details) else "")
        for heading, details in grouped.items()
    )


def _parliament(props: Mapping[str, Any], settings: Mapping[str, Any], args: Any) -> Iterator[str]:
    for document in _documents(props, args.resource_type):
        yield from _parliament_findings(json.dumps(document, sort_keys=True), args.name, settings["minimumSeverity"])


IAM_TYPES = (*POLICY_DOCUMENTS, ROLE)

IAM_RULES = [
    resource_rule(
        "iam-no-star-star",
        "No IAM statement allows every action on every resource, and no administrator policy is attached.",
        types=(*IAM_TYPES, *POLICY_ATTACHMENTS),
        severity=CRITICAL,
        remediation="Grant the actions the workload calls on the resources it owns (see the reference policies "
        "named in components/iam.py).",
        check=_star_star,
    ),
    resource_rule(
        "iam-passrole-scoped",
        "iam:PassRole names the roles it passes and the service it passes them to.",
        types=IAM_TYPES,
        severity=HIGH,
        remediation="Resource: the exact role ARN(s); Condition StringEquals iam:PassedToService (e.g. "
        "ec2.amazonaws.com for Karpenter's node role).",
        check=_passrole,
        config={"requirePassedToService": {"type": "boolean", "default": True}},
    ),
    resource_rule(
        "iam-parliament",
        "Every IAM policy document is lint-clean under parliament with its community auditors, minus the "
        "documented false positives in policies/parliament.yaml.",
        types=IAM_TYPES,
        severity=MEDIUM,
        remediation="Fix the finding; if it is a false positive, add an ignore_locations entry to "
        "policies/parliament.yaml with the reason.",
        check=_parliament,
        config={"minimumSeverity": {"type": "string", "enum": ["LOW", "MEDIUM", "HIGH", "CRITICAL"],
                                    "default": "MEDIUM"}},
    ),
]
