"""Benchmark: direct upstream vs our gateway vs LiteLLM's proxy against the same fast simulator."""
