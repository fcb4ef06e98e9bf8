"""vLLM-compatible simulator for local development, tests and benchmarks; never a production stand-in."""
