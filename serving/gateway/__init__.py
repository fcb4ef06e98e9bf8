"""OpenAI-compatible API gateway in front of vLLM: auth, validation, rate limits, cache, hold queue, drain."""
