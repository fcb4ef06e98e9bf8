"""Load profiles: stages of virtual users (ramp, steady, drop) and what the run must show to pass.

seed000: seed 000's load test, 1,000 chat users with human think time. seed002: seed 002's autoscaling test
(ramp to 50 users over 5 minutes, observe 3-5 replicas, drop to 5 users, observe scale-down after the 5-minute
cooldown; no dropped requests, TTFT p95 under 500 ms). Any other value is a YAML file of the same shape."""

from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Realistic chat prompts of varied length: seed 000's grammar correction, summaries, short answers.
DEFAULT_PROMPTS = (
    "Correct the grammar of this sentence and explain each change: 'Me and him goes to the store yesterday.'",
    "Summarise in three bullet points why Kubernetes uses declarative configuration.",
    "Explain quantum computing in one sentence.",
    "Write a polite two-paragraph email asking a colleague to review a pull request by Friday.",
    "What is the difference between a process and a thread? Answer for a junior developer.",
    "Translate to French: 'The meeting has been moved to Thursday afternoon.'",
    "List five common causes of high latency in a web service and one fix for each.",
    "Rewrite this paragraph to be more concise: 'In order to be able to make a decision about the matter at hand, "
    "it is necessary that we first gather all of the relevant information that is available to us.'",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(Strict):
    name: str
    duration_s: float = Field(gt=0)
    users: int = Field(ge=0)
    spawn_rate: float = Field(gt=0, description="Users started or stopped per second on the way to `users`.")


class Acceptance(Strict):
    max_error_rate: float = Field(default=0.0, ge=0, le=1, description="Dropped requests allowed (seed 002: none).")
    ttft_p95_s: float | None = Field(default=None, gt=0)
    expect_scale_up: bool = False
    expect_scale_down: bool = False


class Profile(Strict):
    name: str
    stages: list[Stage] = Field(min_length=1)
    wait_min_s: float = Field(ge=0)
    wait_max_s: float = Field(ge=0)
    max_tokens: int = Field(default=128, ge=1)
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    request_timeout_s: float = Field(default=300, gt=0)
    sample_interval_s: float = Field(default=15, gt=0)
    acceptance: Acceptance = Field(default_factory=Acceptance)

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.wait_min_s > self.wait_max_s:
            raise ValueError("wait_min_s is above wait_max_s")
        return self

    @property
    def duration_s(self) -> float:
        return sum(stage.duration_s for stage in self.stages)


BUILT_IN = {
    "seed000": Profile(
        name="seed000",
        stages=[
            Stage(name="ramp", duration_s=600, users=1000, spawn_rate=2),
            Stage(name="steady", duration_s=1800, users=1000, spawn_rate=2),
            Stage(name="drop", duration_s=900, users=0, spawn_rate=10),
        ],
        wait_min_s=1, wait_max_s=5, max_tokens=256,
        acceptance=Acceptance(max_error_rate=0.0, expect_scale_up=True, expect_scale_down=True),
    ),
    "seed002": Profile(
        name="seed002",
        stages=[
            Stage(name="ramp", duration_s=300, users=50, spawn_rate=50 / 300),
            Stage(name="steady", duration_s=300, users=50, spawn_rate=1),
            Stage(name="drop", duration_s=600, users=5, spawn_rate=1),
        ],
        wait_min_s=0.1, wait_max_s=0.5, max_tokens=50,
        acceptance=Acceptance(max_error_rate=0.0, ttft_p95_s=0.5, expect_scale_up=True, expect_scale_down=True),
    ),
}


class ProfileError(Exception):
    """A profile name or file that cannot be used; the message names it."""


def load_profile(value: str) -> Profile:
    if value in BUILT_IN:
        return BUILT_IN[value]
    path = Path(value)
    if not path.is_file():
        raise ProfileError(f"--profile {value}: not {', '.join(BUILT_IN)} and no such file")
    try:
        return Profile.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as error:
        raise ProfileError(f"--profile {value}: {' '.join(str(error).split())}") from None
