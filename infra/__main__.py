"""The Pulumi program (`pulumi up -s dev|prod`): validate the stack's configuration, then declare the platform."""

import sys
from pathlib import Path

# Pulumi runs this file with infra/ as the program directory; the packages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi

from infra.program import run
from stacks.loader import ConfigError

try:
    run(pulumi.get_project(), pulumi.get_stack())
except ConfigError as error:
    # RunError is reported by the engine as a plain message, without a Python traceback.
    raise pulumi.RunError(str(error)) from None
