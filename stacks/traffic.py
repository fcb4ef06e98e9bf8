"""What the cost and capacity preview assumes about a stack's traffic and its GPU tier (`traffic:` and
`simulation:` in `Pulumi.<stack>.yaml`). Nothing here changes what `pulumi up` deploys; `llm-platform cost` and
`llm-platform simulate` replay it through the platform as configured (infra/cost/)."""

from typing import Self

from pydantic import Field, field_validator, model_validator

from components.config_base import StrictModel

HOURS_PER_DAY = 24
# Seed 000's scenarios as request rates at the gateway: its capacity table gives about 2 requests/s per GPU pod
# (8 concurrent, 3-6 s each), so its pod ranges (low 2-4, medium 6-10, high 12-16, peak 16-20) are, at their
# midpoints, 6, 16, 28 and 36 requests/s; idle is nights and weekends.
SEED_000_LEVELS = {"idle": 0.0, "low": 6.0, "medium": 16.0, "high": 28.0, "peak": 36.0}
# One 24-hour weekday: the seed's durations (idle 14, low 6, medium 8, high 10, peak 2 h/day) add up to 40 h, so
# they cannot all happen in one day; this keeps its order and shape (peak at midday) within 24 h.
SEED_000_WEEKDAY = (
    ["idle"] * 7 + ["low"] * 2 + ["medium"] * 2 + ["high"] * 2 + ["peak"] * 2 + ["high"] * 2 + ["medium"] * 2
    + ["low"] * 2 + ["idle"] * 3
)
SEED_000_WEEKEND = ["idle"] * HOURS_PER_DAY


class TrafficConfig(StrictModel):
    """Arrivals by hour of day (weekday Mon-Fri, weekend Sat-Sun) as named levels, and what a request costs."""

    levels: dict[str, float] = Field(
        default_factory=lambda: dict(SEED_000_LEVELS), description="Level name -> requests/s at the gateway."
    )
    weekday: list[str] = Field(default_factory=lambda: list(SEED_000_WEEKDAY), description="24 level names.")
    weekend: list[str] = Field(default_factory=lambda: list(SEED_000_WEEKEND), description="24 level names.")
    prompt_tokens: int = Field(default=400, ge=0, le=1_048_576, description="Mean prompt tokens per request.")
    output_tokens: int = Field(default=60, ge=1, le=1_048_576, description="Mean output tokens (exponential).")
    cacheable_share: float = Field(
        default=0.2, ge=0, le=1, description="Share of requests the gateway answers from its cache."
    )

    @field_validator("weekday", "weekend")
    @classmethod
    def whole_day(cls, schedule: list[str]) -> list[str]:
        if len(schedule) != HOURS_PER_DAY:
            raise ValueError(f"lists {len(schedule)} hours; it needs one level name per hour (24)")
        return schedule

    @model_validator(mode="after")
    def schedule_valid(self) -> Self:
        for day, schedule in (("weekday", self.weekday), ("weekend", self.weekend)):
            unknown = sorted(set(schedule) - set(self.levels))
            if unknown:
                raise ValueError(f"{day} names unknown levels {unknown}; levels are: {', '.join(self.levels)}")
        negative = [name for name, rate in self.levels.items() if rate < 0]
        if negative:
            raise ValueError(f"levels {negative} have negative request rates")
        return self

    def hourly_levels(self) -> list[str]:
        """The level of each hour of a week, Monday 00:00 first."""
        return [level for day in [self.weekday] * 5 + [self.weekend] * 2 for level in day]

    def hourly_rates(self) -> list[float]:
        """Requests/s for each hour of a week, Monday 00:00 first."""
        return [self.levels[level] for level in self.hourly_levels()]


class SimulationConfig(StrictModel):
    """The GPU tier's timings and throughput model. Cold starts are not here: the simulator takes them from the
    stack's cold-start budget (components/cold_start.py, `serving.coldStart`)."""

    hpa_sync_s: float = Field(default=15, gt=0, le=300, description="kube-controller-manager HPA sync period.")
    spot_interruptions_per_node_hour: float = Field(default=0.002, ge=0, le=1)
    bandwidth_efficiency: float = Field(default=0.7, gt=0, le=1, description="Share of HBM bandwidth decode uses.")
    compute_efficiency: float = Field(default=0.4, gt=0, le=1, description="Share of dense tensor FLOPs in prefill.")
    model_size_b: float | None = Field(
        default=None, gt=0, le=2000, description="Billions of parameters; unset: read from serving.vllm.model (7B)."
    )
    cache_hit_latency_s: float = Field(default=0.002, ge=0, description="Gateway cache answer (docs/gateway.md).")
    seed: int = 14

