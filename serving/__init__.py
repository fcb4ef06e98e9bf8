"""Serving-side services: the API gateway, the vLLM simulator and their benchmark."""
