"""OpenTelemetry tracing, only when OTEL_EXPORTER_OTLP_ENDPOINT is set: without it nothing is imported."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("serving.gateway.tracing")


def make_tracer() -> Any | None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-sdk / the OTLP HTTP exporter is missing")
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "gateway")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("serving.gateway")
