"""The price catalog: `prices/<region>.json` (resource key -> price, unit, date, source URL, and why it is an
estimate when it is one) and `prices/instances.json` (vCPU, memory and GPUs of each EC2 type the pools can launch).

`llm-platform cost refresh` rebuilds the region files from the AWS Price List API (infra/cost/refresh.py).
"""

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PRICES_DIR = Path(__file__).resolve().parent / "prices"
HOURS_PER_MONTH = 730  # AWS's own monthly convention (365 x 24 / 12)
# What a node keeps for itself before pods fit (kubelet/system reserve, DaemonSets): an approximation of the
# EKS AMIs' kube-reserved plus the add-on DaemonSets, so a 4 vCPU / 16 GiB type never takes a 4 CPU / 24 Gi pod.
NODE_RESERVED_CPU = 0.3
NODE_RESERVED_MEMORY_GIB = 1.5
NODE_MEMORY_USABLE_SHARE = 0.92


class UnpricedError(LookupError):
    """The catalog has no price for this key (a new instance type, node type or region)."""


@dataclass(frozen=True)
class Price:
    key: str
    price: float
    unit: str
    date: str
    source: str
    estimate: str | None = None


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    vcpu: int
    memory_gib: float
    gpus: int
    gpu: str | None

    @property
    def usable_cpu(self) -> float:
        return self.vcpu - NODE_RESERVED_CPU

    @property
    def usable_memory_gib(self) -> float:
        return self.memory_gib * NODE_MEMORY_USABLE_SHARE - NODE_RESERVED_MEMORY_GIB

    def fits(self, cpu: float, memory_gib: float, gpus: int) -> bool:
        return self.usable_cpu >= cpu and self.usable_memory_gib >= memory_gib and self.gpus >= gpus


@dataclass(frozen=True)
class Catalog:
    region: str
    prices: dict[str, Price]
    instances: dict[str, InstanceSpec]

    def price(self, key: str) -> Price:
        if key not in self.prices:
            raise UnpricedError(f"no price for {key!r} in {self.region} (components/prices/{self.region}.json)")
        return self.prices[key]

    def rate(self, key: str) -> float:
        return self.price(key).price

    def instance_hourly(self, instance_type: str, capacity_type: str) -> float:
        return self.rate(f"ec2.{instance_type}.{capacity_type}")

    def cheapest_fit(
        self, families: list[str], capacity_types: list[str], cpu: float, memory_gib: float, gpus: int
    ) -> tuple[InstanceSpec, str]:
        """The type and capacity Karpenter would launch for one pod: Spot first when the pool allows it (its
        default), then the cheapest catalog type of the pool's families that fits the pod's requests."""
        capacity = "spot" if "spot" in capacity_types else capacity_types[0]
        candidates = [
            spec for spec in self.instances.values()
            if spec.name.split(".")[0] in families and spec.fits(cpu, memory_gib, gpus)
            and f"ec2.{spec.name}.{capacity}" in self.prices
        ]
        if not candidates:
            raise UnpricedError(
                f"no catalog instance of families {', '.join(families)} fits {cpu:g} CPU, {memory_gib:g} GiB, "
                f"{gpus} GPU in {self.region}; add the type to components/prices/"
            )
        best = min(candidates, key=lambda spec: (self.instance_hourly(spec.name, capacity), spec.name))
        return best, capacity


@cache
def load_catalog(region: str, prices_dir: Path = PRICES_DIR) -> Catalog:
    path = prices_dir / f"{region}.json"
    if not path.is_file():
        available = sorted(p.stem for p in prices_dir.glob("*-*-*.json"))
        raise UnpricedError(f"no price catalog for region {region}; available: {', '.join(available)}")
    document = json.loads(path.read_text())
    prices = {key: _price(key, entry) for key, entry in document["prices"].items()}
    specs = json.loads((prices_dir / "instances.json").read_text())["types"]
    instances = {
        name: InstanceSpec(name, spec["vcpu"], spec["memoryGib"], spec["gpus"], spec["gpu"])
        for name, spec in specs.items()
    }
    return Catalog(region, prices, instances)


def _price(key: str, entry: dict[str, Any]) -> Price:
    return Price(key, float(entry["price"]), entry["unit"], entry["date"], entry["source"], entry.get("estimate"))


def ceil_div(amount: float, size: float) -> int:
    """Whole units of `size` that hold `amount` (float noise below one part in a billion ignored)."""
    return max(0, math.ceil(amount / size - 1e-9))
