"""The pack's entry point. The Pulumi CLI runs this folder as `python -u -m pulumi.policy <engine> policies`
(runpy puts the folder first on sys.path, so `llm_policy` imports as a top-level package) in the pack's own
virtualenv, built from requirements.txt; `llm-platform policy` starts it the same way. PolicyPack serves the
analyzer gRPC protocol on 127.0.0.1, prints its port and blocks."""

from llm_policy.pack import DESCRIPTION, NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=NAME, description=DESCRIPTION, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
