"""IAM policy documents as data. Every role the platform creates gets its trust and permissions from here."""

import json
from typing import Any

import pulumi

Statement = dict[str, Any]

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"


def document(statements: list[Statement]) -> pulumi.Output[str]:
    """A policy document; statements may hold Outputs (ARNs of resources not yet created)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def service_trust(service: str) -> str:
    """Trust policy letting one AWS service principal assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def pod_identity_trust() -> str:
    """Trust policy for EKS Pod Identity: the agent assumes the role and tags the session with the pod's
    namespace and service account, so the association (not the trust policy) picks which pods get it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": POD_IDENTITY_SERVICE},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


def managed_policy_arn(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"
