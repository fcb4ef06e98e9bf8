"""`llm-platform images`: prefetch the GPU nodes' container images onto a Bottlerocket data-volume snapshot."""
