"""`llm-platform models`: publish model weights to a stack's model bucket with a checksummed manifest, record each
version in the stack's registry table, and promote or roll back the version a stack serves."""
