"""The gateway's defaults, in one place: the gateway's own settings (`settings.py`, so also a local run, the tests'
base and the benchmark) and the stack's `GatewayConfig` (`components/gateway.py`, what is deployed) both read them.

Standard library only: the Pulumi program imports this module without the gateway's dependencies.
"""

WORKERS = 2
MAX_TOKENS = 1024
MAX_BODY_BYTES = 1_000_000
RATE_LIMIT_RPM = 600
RATE_LIMIT_TPM = 200_000
CACHE_TTL_S = 3600
LOCAL_CACHE_MB = 64
# One Redis call, connecting included; past it the request is served without Redis (fail open).
REDIS_TIMEOUT_S = 0.05
RATE_LIMIT_LEASE_PERCENT = 1.0
# A vLLM cold start from zero measured about 142 s with an optimised image and model load (seed 004's stack).
HOLD_TIMEOUT_S = 300
UPSTREAM_CONNECT_TIMEOUT_S = 5
UPSTREAM_READ_TIMEOUT_S = 300
DRAIN_TIMEOUT_S = 60
LOG_LEVEL = "info"
