"""The llm-platform CrossGuard policy pack: every rule, grouped by concern."""
