# syntax=docker/dockerfile:1
# Build: docker build -t cds-service .
# Run:   docker run -p 8080:8080 cds-service

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the native modules, the JSON nesting check and the FHIR scans (hatch_build.py;
# the runtime needs none).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# Dependencies first, so code changes do not rebuild this layer.
COPY pyproject.toml README.md hatch_build.py ./
RUN mkdir -p cds_service rules/_valuesets rules/_terminology && echo '__version__ = "0"' > cds_service/__init__.py \
    && pip wheel --wheel-dir /wheels . \
    && rm /wheels/cds_service-*.whl
COPY cds_service ./cds_service
# The wheel carries the value sets the risk scores read and the RxNorm ingredient map they take
# drugs from (pyproject's force-include).
COPY rules/_valuesets ./rules/_valuesets
COPY rules/_terminology ./rules/_terminology
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --home-dir /var/lib/cds-service --create-home cds \
    && mkdir -p /work && chown cds /work   # the population engine's work directory (compose)
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
COPY rules /app/rules
ENV CDS_HOST=0.0.0.0 \
    CDS_PORT=8080 \
    CDS_RULES_DIR=/app/rules \
    CDS_DATABASE_URL=sqlite:////var/lib/cds-service/cds-service.db
USER cds
WORKDIR /var/lib/cds-service
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["cds-service", "serve"]
