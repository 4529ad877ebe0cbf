"""Dockerfile and docker-compose.yml: no Docker engine here, so check what can be checked."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cds_service.config import Settings
from cds_service.security.tenants import load_tenants

ROOT = Path(__file__).resolve().parents[1]


def test_compose_names_the_services_and_valid_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"cds-service", "postgres", "redis", "nginx"} <= set(services)
    # Replicas behind the load balancer: only nginx publishes a port.
    assert services["cds-service"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["cds-service"] and services["nginx"]["ports"]
    nginx_conf = ROOT / services["nginx"]["volumes"][0].split(":")[0]
    text = nginx_conf.read_text()
    assert "server cds-service:8080" in text and "non_idempotent" in text
    app = services["cds-service"]
    env = app["environment"]
    known = {f"CDS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, f"unknown settings: {set(env) - known}"
    assert env["CDS_DATABASE_URL"].startswith("postgresql://")
    # The database URL points at the compose service, with the credentials it is given.
    pg = services["postgres"]["environment"]
    assert (
        f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
        in (env["CDS_DATABASE_URL"])
    )
    # The tenants file is mounted from the repository: it must exist and parse.
    mounts = dict(v.split(":")[1::-1] for v in app["volumes"])
    tenants_file = ROOT / mounts[env["CDS_TENANTS_FILE"]]
    load_tenants(tenants_file)
    values = {k.removeprefix("CDS_").lower(): v for k, v in env.items()}
    Settings(**{**values, "tenants_file": tenants_file})
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("cds-service", "postgres", "redis"):  # nginx waits on the service's health
        assert services[name]["healthcheck"]["test"]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert "EXPOSE 8080" in text
    assert re.search(r'^CMD \["cds-service", "serve"\]', text, re.MULTILINE)
    for source in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY source {path} missing"
    for variable in re.findall(r"\b(CDS_[A-Z_]+)=", text):
        assert variable.removeprefix("CDS_").lower() in Settings.model_fields


def test_ci_script_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make run" in readme


def test_compose_population_profile_runs_the_engine_on_a_shared_work_directory() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    engine = {"dask-scheduler", "dask-worker", "population"}
    assert all(services[name]["profiles"] == ["population"] for name in engine)
    # `docker compose up` alone starts the service, not the engine.
    assert all("profiles" not in services[name] for name in set(services) - engine)
    assert services["dask-worker"]["command"][:2] == ["dask", "worker"]
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    scheduler = services["population"]["environment"]["CDS_POPULATION_SCHEDULER"]
    assert scheduler == "tcp://dask-scheduler:8786"
    Settings(population_scheduler=scheduler)  # a value the setting accepts
    work = {v for v in services["dask-worker"]["volumes"] if v.endswith(":/work")}
    assert work and work <= set(services["population"]["volumes"])
    assert "population-work" in compose["volumes"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "chown cds /work" in dockerfile  # the runtime user may write there
