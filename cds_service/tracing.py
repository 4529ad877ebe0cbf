"""Optional OpenTelemetry tracing (`CDS_TRACING=otlp`; off by default).

Spans: `cds.hook` (service, hook, hookInstance, tenant, status, cards), `cds.prefetch`
(keys asked, keys fetched) and one `cds.fhir.fetch` per request to the EHR's FHIR server (the
resource type only: URLs carry patient ids, which stay out of traces). Exported over OTLP/HTTP to
`OTEL_EXPORTER_OTLP_ENDPOINT` (the standard OpenTelemetry variables apply). With tracing off the
OpenTelemetry API's no-op tracer would still cost a few microseconds a span (a tracer looked up,
a context attached and detached): `span` hands out one shared, non-recording span instead while
no tracer provider is set (by `configure_tracing`, or by any code through the OpenTelemetry API).
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager

from opentelemetry import trace

__all__ = ["configure_tracing", "span", "tracer"]

log = logging.getLogger(__name__)

# Entered by every span while tracing is off: stateless, so shared by concurrent calls.
_NOT_RECORDING: AbstractContextManager[trace.Span] = contextlib.nullcontext(trace.INVALID_SPAN)


def span(name: str) -> AbstractContextManager[trace.Span]:
    """A span of the service's tracer made current for the `with` block; without a tracer
    provider, the shared non-recording span (its `set_attribute` does nothing)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return _NOT_RECORDING
    return tracer().start_as_current_span(name)


def tracer() -> trace.Tracer:
    """The service's tracer (a no-op unless tracing was configured)."""
    return trace.get_tracer("cds_service")


def configure_tracing(mode: str) -> None:
    """Install an OTLP exporter when `mode` is "otlp" (needs the `tracing` extra)."""
    if mode != "otlp":
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.error("CDS_TRACING=otlp needs the tracing extra: pip install 'cds-service[tracing]'")
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "cds-service"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
