"""Node agents on prod's Bottlerocket GPU nodes (SELinux enforcing, pods as container_t): what each needs there,
as recorded in components/upstream/bottlerocket.json `nodeAgents`, against what the stacks render. None needs a
Bottlerocket-only value, so AL2023 nodes get the same ones."""

import json
import re
from typing import Any

from components import upstream
from infra.offline import Graph

RELEASE = "kubernetes:helm.sh/v3:Release"
ADDON = "aws:eks/addon:Addon"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
FACTS = upstream.facts("bottlerocket")["nodeAgents"]
SELINUX = FACTS["selinux"]
AGENTS = FACTS["agents"]


def selinux_type(path: str) -> str:
    """The type Bottlerocket's policy gives a host path: that of its longest recorded prefix."""
    matches = [(prefix, label) for prefix, label in SELINUX["fileContexts"]
               if path == prefix or path.startswith(f"{prefix}/")]
    assert matches, f"{path}: no recorded file context"
    return max(matches, key=lambda match: len(match[0]))[1]


def _ami_families(graph: Graph) -> set[str]:
    return {str(graph.one(NODE_CLASS, f"node-pools-{pool}-ec2nodeclass").inputs["spec"]["amiSelectorTerms"][0]
                ["alias"]).split("@")[0] for pool in ("cpu", "gpu")}


def _security_contexts(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [values.get(key) or {} for key in ("podSecurityContext", "containerSecurityContext")]


# --- Fluent Bit: container logs through hostPath, read and written as container_t -----------------------------------

def test_selinux_type_follows_the_longest_recorded_prefix() -> None:
    assert selinux_type("/var/log/pods/ns_pod_uid/c/0.log") == "local_t"
    assert selinux_type("/var/log/journal/abc/system.journal") == "state_t"
    assert selinux_type("/var/log/journalist.db") == "local_t"


def test_prod_fluent_bit_reads_and_writes_only_what_container_t_may(prod_graph: Graph) -> None:
    release = prod_graph.one(RELEASE, "logs")
    facts = AGENTS["aws-for-fluent-bit"]
    assert "bottlerocket" in _ami_families(prod_graph), "premise: prod's GPU pool runs Bottlerocket"
    assert release.inputs["version"] == facts["chart"], f"{release.urn}: the facts were read at chart {facts['chart']}"
    values = release.inputs["values"]
    volumes = values.get("volumes") or [{"name": name, "hostPath": {"path": path}}
                                        for name, path in facts["chartHostPaths"].items()]
    host_paths = [volume["hostPath"]["path"] for volume in volumes if "hostPath" in volume]
    tail = values.get("input", {})
    read = [*host_paths, tail.get("path", facts["tailPath"]).split("*")[0].rstrip("/")]
    denied = SELINUX["containerT"]["notReadable"]
    unreadable = {path: selinux_type(path) for path in read if selinux_type(path) in denied}
    assert not unreadable, f"{release.urn}: container_t cannot read {unreadable}"
    db_dir = tail.get("db", facts["tailDb"]).rsplit("/", 1)[0]
    assert selinux_type(db_dir) in SELINUX["containerT"]["writable"], f"{release.urn}: tail DB in {db_dir}"


def test_fluent_bit_runs_unprivileged_and_reads_no_journal(graph: Graph) -> None:
    """Recorded: it needs neither privileged (control_t) nor an SELinux type such as super_t, which Bottlerocket's
    guidance asks to limit; the journal is not an input (on either node family)."""
    release = graph.one(RELEASE, "logs")
    facts = AGENTS["aws-for-fluent-bit"]
    assert facts["needsPrivileged"] is False and facts["needsSeLinuxOptions"] is False
    for context in _security_contexts(release.inputs["values"]):
        assert context.get("privileged") is not True and "seLinuxOptions" not in context, release.urn
    assert facts["journalRead"] is False
    assert FACTS["journal"]["path"] not in json.dumps(release.inputs["values"]), f"{release.urn}: reads the journal"


def test_fluent_bit_gets_the_same_values_on_al2023_and_bottlerocket(dev_graph: Graph, prod_graph: Graph) -> None:
    def node_side(graph: Graph) -> dict[str, Any]:
        values = dict(graph.one(RELEASE, "logs").inputs["values"])
        values.pop("cloudWatchLogs")  # the stack's own log group and region
        return values

    assert _ami_families(dev_graph) == {"al2023"}, "premise: dev runs AL2023 only"
    assert node_side(dev_graph) == node_side(prod_graph)


# --- node-exporter: kube-prometheus-stack's, unprivileged, host /, /proc, /sys ------------------------------------

def _node_exporter_args(graph: Graph) -> list[str]:
    release = graph.one(RELEASE, "observability")
    assert release.inputs["version"] == AGENTS["prometheus-node-exporter"]["kubePrometheusStack"], release.urn
    exporter = release.inputs["values"].get("prometheus-node-exporter", {})
    return list(exporter.get("extraArgs", AGENTS["prometheus-node-exporter"]["kubePrometheusStackExtraArgs"]))


def test_node_exporter_skips_the_kubelet_mounts_bottlerocket_denies_it(graph: Graph) -> None:
    """bottlerocket#1271: a non-root exporter gets EACCES from statfs() below /var/lib/kubelet; the exclusion (the
    chart default unless our values replace extraArgs) must keep skipping those mounts."""
    flag = "--collector.filesystem.mount-points-exclude="
    (exclude,) = [arg.removeprefix(flag) for arg in _node_exporter_args(graph) if arg.startswith(flag)]
    pod_volume = "/var/lib/kubelet/pods/0d1c/volumes/kubernetes.io~csi/pvc-1/mount"
    assert re.search(exclude, pod_volume), f"{exclude} lets node-exporter statfs {pod_volume}"
    assert not re.search(exclude, "/local"), "the data volume's metrics are wanted"


def test_node_exporter_keeps_the_charts_unprivileged_pod(graph: Graph) -> None:
    release = graph.one(RELEASE, "observability")
    assert AGENTS["prometheus-node-exporter"]["needsPrivileged"] is False
    exporter = release.inputs["values"].get("prometheus-node-exporter", {})
    for key in ("securityContext", "containerSecurityContext"):
        context = exporter.get(key) or {}
        assert context.get("privileged") is not True and "seLinuxOptions" not in context, release.urn


# --- EKS add-ons: AWS-managed node agents, default configuration -----------------------------------------------------

def test_ebs_csi_driver_leaves_selinux_mounts_off_in_a_mixed_cluster(graph: Graph) -> None:
    """node.selinux 'must only be set true if all linux nodes in the DaemonSet have SELinux enabled'; the CPU and
    system nodes run AL2023."""
    addon = graph.one(ADDON, "block-storage-ebs-csi-driver")
    assert "al2023" in _ami_families(graph), "premise: AL2023 nodes in the cluster"
    config = json.loads(addon.inputs.get("configurationValues") or "{}")
    assert config.get("node", {}).get("selinux") is not True, addon.urn


def test_pod_identity_agent_runs_its_ec2_daemonset_only(graph: Graph) -> None:
    """The hybrid-bottlerocket DaemonSet (spc_t, a host credentials file) is for EKS Hybrid Nodes, not EC2."""
    addon = graph.one(ADDON, "cluster-pod-identity-agent")
    assert "Hybrid Nodes" in AGENTS["eks-pod-identity-agent"]["bottlerocketDaemonSet"]
    config = json.loads(addon.inputs.get("configurationValues") or "{}")
    assert not config.get("daemonsets", {}).get("hybrid-bottlerocket", {}).get("create"), addon.urn
