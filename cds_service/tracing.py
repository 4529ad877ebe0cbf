"""Optional OpenTelemetry tracing (`CDS_TRACING=otlp`; off by default).

Spans: `cds.hook` (service, hook, hookInstance, tenant, status, cards), `cds.prefetch`
(keys asked, keys fetched) and one `cds.fhir.fetch` per request to the EHR's FHIR server (the
resource type only: URLs carry patient ids, which stay out of traces). Exported over OTLP/HTTP to
`OTEL_EXPORTER_OTLP_ENDPOINT` (the standard OpenTelemetry variables apply). With tracing off the
OpenTelemetry API's no-op tracer is used, at no cost.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

__all__ = ["configure_tracing", "tracer"]

log = logging.getLogger(__name__)


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
