"""Each resource rule fed a compliant and a non-compliant resource, through the engine's unknown-checking proxy."""

import json
from typing import Any

import pytest

from .conftest import resource_violations

BUCKET = "aws:s3/bucket:Bucket"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
EKS = "eks:index:Cluster"
EKS_CHILD = "aws:eks/cluster:Cluster"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
# A Bottlerocket data volume from an image snapshot, initialized at a provisioned rate, kubelet bound to NVMe by a
# bootstrap command rather than Karpenter's RAID0 policy.
SNAPSHOT_CLASS = {"spec": {
    "blockDeviceMappings": [{"deviceName": "/dev/xvdb",
                             "ebs": {"snapshotID": "snap-0a1b2c3d", "volumeInitializationRate": 300}}],
    "userData": "[settings.bootstrap-commands.010-instance-store-kubelet]\nmode = \"always\"\n",
}}
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
WORLD = ["0.0.0.0/0"]


def policy(*statement: dict[str, Any]) -> dict[str, str]:
    return {"policy": json.dumps({"Version": "2012-10-17", "Statement": list(statement)})}


def gpu_pool(**spec: Any) -> dict[str, Any]:
    template = {"requirements": [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6"]}]}
    template.update(spec.pop("template", {}))
    return {"spec": {"template": {"spec": template}, **spec}}


def deployment(container: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container], **pod}}}}


SAFE = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
CONTAINER = {
    "name": "app", "image": "ghcr.io/acme/app:1.2.3", "securityContext": SAFE,
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}, "livenessProbe": {"httpGet": {"port": 8080}},
}


def container(**changes: Any) -> dict[str, Any]:
    return {key: value for key, value in {**CONTAINER, **changes}.items() if value is not None}


def scaled(triggers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"spec": {"triggers": triggers, **spec}}


def prometheus(name: str, query: str) -> dict[str, Any]:
    return {"type": "prometheus", "name": name, "metadata": {"query": query, "threshold": "6"}}


WAITING = prometheus("waiting", 'sum(vllm:num_requests_waiting{namespace="llm-serving"})')
PENDING = prometheus("pending", "sum(gateway_pending_requests)")
PASS_NODE_ROLE = {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/node",
                  "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}

# (rule, resource type, compliant props, non-compliant props, fragment of the expected message, rule config)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], str, dict[str, Any] | None]] = [
    ("s3-no-public-acl", BUCKET, {"acl": "private"}, {"acl": "public-read"}, "'public-read'", None),
    ("s3-no-force-destroy", BUCKET, {"forceDestroy": False}, {"forceDestroy": True}, "forceDestroy is true", None),
    ("redis-encryption-in-transit", REDIS, {"transitEncryptionEnabled": True, "transitEncryptionMode": "required"},
     {"transitEncryptionEnabled": True, "transitEncryptionMode": "preferred"}, "'preferred'", None),
    ("redis-encryption-in-transit", REDIS, {"transitEncryptionEnabled": True},
     {"transitEncryptionEnabled": False}, "clear text", None),
    ("redis-encryption-at-rest", REDIS, {"atRestEncryptionEnabled": True}, {}, "atRestEncryptionEnabled", None),
    ("redis-auth-token", REDIS, {"authToken": "[secret]"}, {"authToken": ""}, "AUTH token", None),
    ("redis-multi-az", REDIS,
     {"automaticFailoverEnabled": True, "multiAzEnabled": True, "numCacheClusters": 2},
     {"automaticFailoverEnabled": True, "multiAzEnabled": True, "numCacheClusters": 1}, "at least 2 nodes", None),
    ("eks-supported-version", EKS, {"version": "1.35"}, {"version": "1.34"}, "1.34 is not in", None),
    ("eks-supported-version", EKS_CHILD, {"version": "1.35"}, {}, "no Kubernetes version is pinned", None),
    ("eks-control-plane-logging", EKS, {"enabledClusterLogTypes": ["api", "audit", "authenticator"]},
     {"enabledClusterLogTypes": ["api"]}, "audit, authenticator", None),
    ("eks-secrets-encryption", EKS, {"encryptionConfigKeyArn": "arn:aws:kms:us-west-2:1:key/k"}, {},
     "not envelope-encrypted", None),
    ("eks-secrets-encryption", EKS_CHILD,
     {"encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-west-2:1:key/k"}, "resources": ["secrets"]}},
     {"encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-west-2:1:key/k"}, "resources": []}},
     "not envelope-encrypted", None),
    ("eks-endpoint-not-public", EKS, {"endpointPublicAccess": False},
     {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}, "private endpoint only",
     {"allowPublicEndpoint": False}),
    ("eks-endpoint-not-public", EKS, {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]},
     {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}, "open to 0.0.0.0/0", None),
    ("eks-endpoint-not-public", EKS_CHILD, {"vpcConfig": {"endpointPublicAccess": False}},
     {"vpcConfig": {"endpointPublicAccess": True}}, "(the default)", None),
    ("eks-authentication-mode", EKS, {"authenticationMode": "API"}, {}, "CONFIG_MAP (the default)", None),
    ("eks-authentication-mode", EKS_CHILD, {"accessConfig": {"authenticationMode": "API"}},
     {"accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP"}}, "API_AND_CONFIG_MAP", None),
    ("sg-no-world-ingress", SG, {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22,
                                              "cidrBlocks": ["10.0.0.0/16"]}]},
     {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": WORLD}]},
     "0.0.0.0/0 on tcp port 22", None),
    ("sg-no-world-ingress", SG_RULE, {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0,
                                      "cidrBlocks": WORLD},
     {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]},
     "::/0 on -1 all ports", None),
    ("sg-no-world-ingress", INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
                                           "referencedSecurityGroupId": "sg-1"},
     {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}, "port 443", None),
    ("iam-no-star-star", ROLE_POLICY,
     policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::models/*"}),
     policy({"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"}), "Action '*' on Resource '*'", None),
    ("iam-no-star-star", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
     {"policyArn": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"},
     {"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}, "AdministratorAccess", None),
    ("iam-passrole-scoped", ROLE_POLICY, policy(PASS_NODE_ROLE),
     policy({**PASS_NODE_ROLE, "Resource": "*"}), "iam:PassRole on ['*']", None),
    ("iam-passrole-scoped", ROLE_POLICY, policy(PASS_NODE_ROLE),
     policy({**PASS_NODE_ROLE, "Action": "iam:Pass*", "Condition": {}}), "without an iam:PassedToService", None),
    ("iam-parliament", ROLE_POLICY,
     policy({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::models/*"}),
     policy({"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": "*"}), "PERMISSIONS_MANAGEMENT_ACTIONS", None),
    ("karpenter-gpu-taint", NODE_POOL,
     gpu_pool(template={"taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]}),
     gpu_pool(), "no nvidia.com/gpu:NoSchedule taint", None),
    ("karpenter-limits", NODE_POOL, gpu_pool(limits={"cpu": "64", "nvidia.com/gpu": "8"}),
     gpu_pool(limits={"cpu": "64"}), "no spec.limits['nvidia.com/gpu']", None),
    ("karpenter-limits", NODE_POOL, gpu_pool(limits={"cpu": "64", "nvidia.com/gpu": "8"}),
     gpu_pool(limits={"cpu": "64", "nvidia.com/gpu": "32"}), "32 exceeds this stack's maximum of 16", None),
    ("nodes-imdsv2", NODE_CLASS, {"spec": {}}, {"spec": {"metadataOptions": {"httpTokens": "optional"}}},
     "'optional', not 'required'", None),
    ("nodes-imdsv2", LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1}},
     {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2}}, "hop limit is 2.0", None),
    ("nodes-root-volume-encrypted", NODE_CLASS,
     {"spec": {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": True}}]}},
     {"spec": {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": False}}]}},
     "/dev/xvda is not encrypted", None),
    ("nodes-root-volume-encrypted", LAUNCH_TEMPLATE,
     {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}]}, {},
     "no block device mapping", None),
    ("karpenter-ami-pinned", NODE_CLASS, {"spec": {"amiSelectorTerms": [{"alias": "al2023@v20251117"}]}},
     {"spec": {"amiSelectorTerms": [{"alias": "al2023@latest"}]}}, "al2023@latest follows every new release", None),
    ("nodes-snapshot-images-reachable", NODE_CLASS, SNAPSHOT_CLASS,
     {"spec": {**SNAPSHOT_CLASS["spec"], "instanceStorePolicy": "RAID0"}}, "hiding the snapshot's images", None),
    ("nodes-snapshot-images-reachable", NODE_CLASS, SNAPSHOT_CLASS,
     {"spec": {"blockDeviceMappings": [{"deviceName": "/dev/xvdb", "ebs": {"snapshotID": "snap-0a1b2c3d"}}]}},
     "no volumeInitializationRate", None),
    ("nodes-snapshot-images-reachable", NODE_CLASS, SNAPSHOT_CLASS,
     {"spec": {**SNAPSHOT_CLASS["spec"], "userData": '[settings.container-runtime]\nsnapshotter = "soci"\n'}},
     "wipes /var/lib/containerd", None),
    ("karpenter-gpu-disruption", NODE_POOL,
     gpu_pool(disruption={"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "20m"}),
     gpu_pool(disruption={"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m"}),
     "consolidateAfter '1m'", None),
    ("k8s-image-pinned", DEPLOYMENT, deployment(container(image="vllm/vllm-openai:v0.33.0")),
     deployment(container(image="vllm/vllm-openai:latest")), "tag latest means latest", None),
    ("k8s-image-pinned", DEPLOYMENT, deployment(container(image="registry:5000/app@sha256:" + "a" * 64)),
     deployment(container(image="registry:5000/app")), "tag missing means latest", None),
    ("k8s-image-pinned", DEPLOYMENT, deployment(container(image="ghcr.io/a/app@sha256:" + "b" * 64)),
     deployment(container(image="ghcr.io/a/app:1.0")), "not pinned by digest", {"requireDigest": True}),
    ("k8s-resources", DEPLOYMENT, deployment(container()),
     deployment(container(resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})),
     "no limits.cpu", None),
    ("k8s-gpu-requests-equal-limits", DEPLOYMENT,
     deployment(container(resources={"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": 1}})),
     deployment(container(resources={"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}})),
     "request 1 differs from limit 2", None),
    ("k8s-probes", DEPLOYMENT, deployment(container()), deployment(container(livenessProbe=None)),
     "no livenessProbe", None),
    ("k8s-run-as-non-root", DEPLOYMENT, deployment(container()),
     deployment(container(securityContext={"allowPrivilegeEscalation": False})), "may run as root", None),
    ("k8s-run-as-non-root", DEPLOYMENT,
     deployment(container(securityContext={"allowPrivilegeEscalation": False}), securityContext={"runAsUser": 1000}),
     deployment(container(securityContext={"runAsNonRoot": True})), "allowPrivilegeEscalation is not false", None),
    ("k8s-read-only-root-filesystem", DEPLOYMENT, deployment(container()),
     deployment(container(securityContext={"readOnlyRootFilesystem": False})), "root filesystem is writable", None),
    ("k8s-graceful-shutdown", DEPLOYMENT,
     deployment(container(args=["m", "--shutdown-timeout", "60"], lifecycle={"preStop": {"sleep": {"seconds": 10}}}),
                terminationGracePeriodSeconds=80),
     deployment(container(args=["m", "--shutdown-timeout=60"], lifecycle={"preStop": {"sleep": {"seconds": 10}}})),
     "take 70 s but terminationGracePeriodSeconds is 30", None),
    ("k8s-graceful-shutdown", DEPLOYMENT,
     deployment(container(env=[{"name": "GATEWAY_DRAIN_TIMEOUT_S", "value": "60"}],
                          lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
                terminationGracePeriodSeconds=75),
     deployment(container(env=[{"name": "GATEWAY_DRAIN_TIMEOUT_S", "value": "60"}],
                          lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
                terminationGracePeriodSeconds=60), "take 65 s", None),
    ("keda-known-metrics", SCALED_OBJECT, scaled([WAITING, PENDING]),
     scaled([prometheus("waiting", "sum(vllm_num_requests_waiting)")]), "vllm_num_requests_waiting is not", None),
    ("keda-known-metrics", SCALED_OBJECT,
     scaled([prometheus("gpu", "avg(DCGM_FI_DEV_GPU_UTIL{namespace='llm-serving'})")]),
     scaled([prometheus("gpu", "avg(DCGM_FI_DEV_GPU_UTILIZATION)")]), "DCGM_FI_DEV_GPU_UTILIZATION is not", None),
    ("keda-known-metrics", SCALED_OBJECT,
     scaled([prometheus("kv", "avg(vllm:kv_cache_usage_perc)")]),
     scaled([prometheus("kv", "avg(vllm:gpu_cache_usage_perc)")]), "vllm:gpu_cache_usage_perc is not", None),
    ("keda-known-metrics", SCALED_OBJECT,
     scaled([prometheus("p95", "histogram_quantile(0.95, sum by (le) (rate(vllm:request_prefill_time_seconds_bucket"
                               "[5m])))")]),
     scaled([prometheus("tpot", "histogram_quantile(0.95, sum by (le) (rate(vllm:time_per_output_token_seconds_bucket"
                                "[5m])))")]), "vllm:time_per_output_token_seconds_bucket is not", None),
    ("autoscaling-max-replicas", SCALED_OBJECT, scaled([WAITING], maxReplicaCount=6), scaled([WAITING]),
     "KEDA's default is 100", None),
    ("autoscaling-max-replicas", HPA, {"spec": {"maxReplicas": 6}}, {"spec": {"maxReplicas": 20}},
     "at most 20 replicas, above this stack's bound of 10", None),
    ("keda-scale-to-zero-activation", SCALED_OBJECT, scaled([WAITING, PENDING], minReplicaCount=0),
     scaled([WAITING], minReplicaCount=0), "no trigger reads ['gateway_pending_requests']", None),
    # A cron trigger wakes its target on schedule (the warm-capacity placeholder); a metric trigger alone does not.
    ("keda-scale-to-zero-activation", SCALED_OBJECT,
     scaled([{"type": "cron", "metadata": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *",
                                           "desiredReplicas": "1"}}], minReplicaCount=0),
     scaled([WAITING], minReplicaCount=0), "no trigger reads", None),
    ("keda-stabilization", SCALED_OBJECT,
     scaled([WAITING], advanced={"horizontalPodAutoscalerConfig": {"behavior": {
         "scaleUp": {"stabilizationWindowSeconds": 30}, "scaleDown": {"stabilizationWindowSeconds": 300}}}}),
     scaled([WAITING], advanced={"horizontalPodAutoscalerConfig": {"behavior": {
         "scaleDown": {"stabilizationWindowSeconds": 60}}}}), "60 s is shorter than 300 s", None),
]


@pytest.mark.parametrize(("rule", "kind", "good", "bad", "expected", "config"), CASES,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(CASES)])
def test_rule_passes_compliant_and_flags_non_compliant(
    rule: str, kind: str, good: dict, bad: dict, expected: str, config: dict | None
) -> None:
    assert resource_violations(rule, kind, good, config) == []
    found = resource_violations(rule, kind, bad, config)
    assert any(expected in message for message in found), f"{rule} on {kind}: {found}"


def test_rules_ignore_other_resource_types() -> None:
    assert resource_violations("redis-auth-token", BUCKET, {}) == []


@pytest.mark.parametrize(("rule", "kind", "props", "config"), [
    ("redis-multi-az", REDIS, {"numCacheClusters": 1}, {"required": False}),
    ("karpenter-ami-pinned", NODE_CLASS, {"spec": {"amiSelectorTerms": [{"alias": "al2023@latest"}]}},
     {"required": False}),
    ("sg-no-world-ingress", SG, {"ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443,
                                              "cidrBlocks": WORLD}]}, None),
    ("karpenter-gpu-taint", NODE_POOL, {"spec": {"template": {"spec": {"requirements": [
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["m7i"]}]}}}}, None),
])
def test_dev_relaxations_and_exemptions(rule: str, kind: str, props: dict, config: dict | None) -> None:
    """Settings a stack's config relaxes, the load balancer's 443, a CPU pool: no violation."""
    assert resource_violations(rule, kind, props, config, name="edge-alb") == []


def test_world_ingress_on_443_is_only_for_load_balancers() -> None:
    props = {"ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": WORLD}]}
    assert resource_violations("sg-no-world-ingress", SG, props, name="cache-redis") != []


def test_vllm_image_may_run_as_root_but_never_escalate() -> None:
    """The vllm/vllm-openai image runs as root and writes /root/.cache (its Dockerfile sets no USER)."""
    vllm = deployment(container(image="vllm/vllm-openai:v0.33.0", securityContext={}))
    assert resource_violations("k8s-run-as-non-root", DEPLOYMENT, vllm) == [
        "container app: allowPrivilegeEscalation is not false"
    ]
    assert resource_violations("k8s-read-only-root-filesystem", DEPLOYMENT, vllm) == []
    other = deployment(container(image="ghcr.io/acme/app:1.0", securityContext={"allowPrivilegeEscalation": False}))
    assert resource_violations("k8s-run-as-non-root", DEPLOYMENT, other) != []


def test_parliament_false_positives_are_ignored_only_where_documented() -> None:
    """policies/parliament.yaml ignores PRIVILEGE_ESCALATION for the Karpenter controller only."""
    karpenter = policy(PASS_NODE_ROLE, {"Effect": "Allow", "Action": "ec2:RunInstances",
                                        "Resource": "arn:aws:ec2:us-west-2:*:instance/*"})
    elsewhere = resource_violations("iam-parliament", ROLE_POLICY, karpenter, name="some-role")
    assert any(m.startswith("PRIVILEGE_ESCALATION") for m in elsewhere), elsewhere
    assert not any(
        m.startswith("PRIVILEGE_ESCALATION")
        for m in resource_violations("iam-parliament", ROLE_POLICY, karpenter, name="karpenter-controller")
    )


def test_values_unknown_during_a_preview_count_as_set() -> None:
    """A KMS key created in the same update: its ARN is the engine's unknown sentinel until then."""
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi-policy proxy.UNKNOWN_STRING_VALUE
    props = {"encryptionConfig": {"provider": {"keyArn": unknown}, "resources": ["secrets"]}}
    assert resource_violations("eks-secrets-encryption", EKS_CHILD, props) == []
