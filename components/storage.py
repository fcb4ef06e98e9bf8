"""Block storage for stateful add-ons: the EBS CSI driver as an EKS add-on with its Pod Identity role, and an
encrypted gp3 StorageClass that Prometheus and Grafana claim volumes from.

Facts (AWS EKS user guide, "Amazon EBS CSI driver" add-on page; AWS managed policy reference): the add-on is
named `aws-ebs-csi-driver`, its controller runs as service account `ebs-csi-controller-sa` in kube-system, and
the managed policy `arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy` grants what it needs; the
provisioner name is `ebs.csi.aws.com` and gp3/encrypted are its StorageClass parameters.
"""

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import iam

STORAGE_CLASS = "gp3-encrypted"
EBS_CSI_ADDON = "aws-ebs-csi-driver"
EBS_CSI_PROVISIONER = "ebs.csi.aws.com"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
EBS_CSI_POLICY = "service-role/AmazonEBSCSIDriverPolicy"


def storage_class_spec() -> dict[str, Any]:
    """Encrypted with the account's EBS key; a volume is made in the zone of the pod that first claims it."""
    return {
        "provisioner": EBS_CSI_PROVISIONER,
        "parameters": {"type": "gp3", "encrypted": "true"},
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        "reclaimPolicy": "Delete",
    }


@dataclass(frozen=True)
class BlockStorageArgs:
    cluster_name: pulumi.Input[str]
    kubernetes_provider: k8s.Provider
    # The system node group and the Pod Identity agent: the driver's controller needs credentials when it starts.
    system_ready: list[pulumi.Resource]


class BlockStorage(pulumi.ComponentResource):
    storage_class: k8s.storage.v1.StorageClass

    def __init__(self, name: str, args: BlockStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-platform:components:BlockStorage", name, None, opts)
        role = aws.iam.Role(
            f"{name}-ebs-csi",
            description="EBS CSI driver controller (EKS Pod Identity)",
            assume_role_policy=iam.pod_identity_trust(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi",
            role=role.name,
            policy_arn=iam.managed_policy_arn(EBS_CSI_POLICY),
            opts=pulumi.ResourceOptions(parent=role),
        )
        addon = aws.eks.Addon(
            f"{name}-ebs-csi-driver",
            cluster_name=args.cluster_name,
            addon_name=EBS_CSI_ADDON,
            pod_identity_associations=[{"role_arn": role.arn, "service_account": EBS_CSI_SERVICE_ACCOUNT}],
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, *args.system_ready]),
        )
        spec = storage_class_spec()
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-{STORAGE_CLASS}",
            metadata={"name": STORAGE_CLASS},
            provisioner=spec["provisioner"],
            parameters=spec["parameters"],
            volume_binding_mode=spec["volumeBindingMode"],
            allow_volume_expansion=spec["allowVolumeExpansion"],
            reclaim_policy=spec["reclaimPolicy"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=[addon]),
        )
        self.register_outputs({"storage_class": STORAGE_CLASS})
