"""Every rule of the pack, in the order the README lists them."""

from .cloud import EKS_RULES, IAM_RULES, NETWORK_RULES
from .nodes import NODE_RULES
from .scaling import SCALING_RULES
from .stack import STACK_RULES
from .storage import CACHE_RULES, S3_RULES
from .workloads import WORKLOAD_RULES

NAME = "llm-platform"
DESCRIPTION = "Security, reliability, deploy order and cost guardrails of the llm-platform stacks."

POLICIES = [
    *S3_RULES,
    *CACHE_RULES,
    *EKS_RULES,
    *NETWORK_RULES,
    *IAM_RULES,
    *NODE_RULES,
    *WORKLOAD_RULES,
    *SCALING_RULES,
    *STACK_RULES,
]
