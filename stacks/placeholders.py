"""Example values the shipped stack files carry until a user fills in their own.

The offline preview runs with them and lists them as warnings; a real `pulumi preview`/`pulumi up` refuses them,
one line per value saying what belongs there, before any resource is declared.
"""

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stacks.config import PlatformConfig
from stacks.loader import NAMESPACE, ConfigError

# RFC 5737 §3: TEST-NET-1/2/3, reserved for documentation.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.IPv4Network(block) for block in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
# The account id AWS's own documentation uses in example ARNs.
EXAMPLE_ACCOUNT_ID = "123456789012"
# RFC 2606 §3 (second-level example domains) and §2 (reserved top-level names).
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TOP_LEVEL = ("test", "example", "invalid", "localhost")
# AWS documentation marks example identifiers with EXAMPLE (AKIAIOSFODNN7EXAMPLE, Z3M3LMPEXAMPLE).
EXAMPLE_MARKER = "EXAMPLE"
# The EBS snapshot id the EC2 documentation's examples use.
EXAMPLE_SNAPSHOT_ID = "snap-1234567890abcdef0"
# Where this project publishes no image: the stack builds its own (components/images.py).
UNPUBLISHED_IMAGE_PREFIXES = ("ghcr.io/llm-platform/",)

_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,63}$")
_INDEX = re.compile(r"\[\d+\]")

# What belongs in each key, by its dotted path with list positions removed.
WHAT_BELONGS = {
    "cluster.publicAccessCidrs": "the egress CIDRs your deploys come from (office, VPN or CI runner)",
    "cluster.privateAccessCidrs": "the CIDRs of the VPN or peered network routed into the VPC",
    "cluster.adminPrincipalArns": "the ARNs of your administrators' IAM roles or users",
    "edge.domain": "the domain your clients will call, served by a DNS zone you control",
    "edge.hostedZoneId": "the id of the Route 53 public hosted zone that serves edge.domain (aws route53 "
    "list-hosted-zones)",
    "edge.certificateArn": "the ARN of an ISSUED ACM certificate for edge.domain in the stack's region",
    "serving.gateway.image": "an image you pushed to a registry your nodes can pull from, or unset it so the stack "
    "builds serving/Dockerfile",
    "addons.karpenter.gpuPool.imageSnapshotId": "the snapshot `llm-platform images snapshot --stack <stack>` "
    "builds (it writes the id here)",
    "serving.apps.image": "your app's image in a registry your nodes can pull from (or use build, or remove the app)",
}
DEFAULT_WHAT_BELONGS = "your own value (docs/deploy.md lists what each stack needs)"


@dataclass(frozen=True)
class Placeholder:
    key: str
    value: str
    reason: str

    def message(self, source: str) -> str:
        what = WHAT_BELONGS.get(_INDEX.sub("", self.key), DEFAULT_WHAT_BELONGS)
        return f"{source}: {NAMESPACE}:{self.key}: {self.value} is a placeholder ({self.reason}); set it to {what}"


def find_placeholders(config: PlatformConfig) -> list[Placeholder]:
    """Every example value in the validated config, defaults included, in key order."""
    found = []
    for key, value in _strings(config.model_dump(mode="json", by_alias=True), ""):
        reason = placeholder_reason(value)
        if reason:
            found.append(Placeholder(key, value, reason))
    return found


def placeholder_reason(value: str) -> str | None:
    """Why `value` is an example rather than a real setting, or None."""
    if "/" in value and _documentation_cidr(value):
        return "a documentation address range, RFC 5737"
    if f":{EXAMPLE_ACCOUNT_ID}:" in value:
        return f"AWS's example account id {EXAMPLE_ACCOUNT_ID}"
    if value == EXAMPLE_SNAPSHOT_ID:
        return "the EC2 documentation's example snapshot id"
    if value.startswith(UNPUBLISHED_IMAGE_PREFIXES):
        return "an image this project does not publish"
    if _DOMAIN.match(value) and _example_domain(value):
        return "a domain reserved for examples, RFC 2606"
    if EXAMPLE_MARKER in value:
        return "an AWS documentation example id"
    return None


def refuse_placeholders(config: PlatformConfig, source: str) -> None:
    """What a real deploy runs first: ConfigError with one line per example value."""
    placeholders = find_placeholders(config)
    if placeholders:
        raise ConfigError("\n".join(placeholder.message(source) for placeholder in placeholders))


def _strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _strings(item, f"{key}.{name}" if key else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{key}[{index}]")
    elif isinstance(value, str):
        yield key, value


def _documentation_cidr(value: str) -> bool:
    try:
        network = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return False
    return any(network.overlaps(block) for block in DOCUMENTATION_NETWORKS)


def _example_domain(value: str) -> bool:
    domain = value.removeprefix("*.")
    return domain.rsplit(".", 1)[-1] in RESERVED_TOP_LEVEL or any(
        domain == example or domain.endswith(f".{example}") for example in EXAMPLE_DOMAINS
    )
