"""The pack's entry point: `pulumi preview --policy-pack policies` runs this file in the pack's own virtualenv
(built from requirements.txt); `llm-platform policy` starts it the same way. PolicyPack serves the analyzer gRPC
protocol on 127.0.0.1, prints its port and blocks."""

import sys
from pathlib import Path

# The pack runs as a program folder, not an installed package: make its own modules importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_policy.pack import DESCRIPTION, NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=NAME, description=DESCRIPTION, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
