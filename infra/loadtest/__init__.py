"""`llm-platform loadtest`: a locust plan (locustfile.py) driven in-process by runner.py, which records latency,
errors and replicas over time and writes a markdown report with a plot. Runs in its own process (gevent
monkey-patches the standard library, which the Pulumi/gRPC side of the CLI must not see)."""
