"""The base of every component's configuration model, and value types more than one component validates.

Keys are camelCase in YAML (Pulumi's convention) and snake_case in Python; unknown keys are rejected, so a typo
never silently falls back to a default; a validated config is immutable.
"""

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        regex_engine="python-re",
    )


def _cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"not an IPv4 CIDR block with its host bits zero, like 10.0.0.0/16 ({error})") from None
    return str(network)


def _instance_type(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", value):
        raise ValueError("not an EC2 instance type like m6i.large")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
InstanceType = Annotated[str, AfterValidator(_instance_type)]
