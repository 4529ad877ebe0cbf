"""A synthetic population generated once per session (the partitioning's memory test and the
generator's tests read it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.population.generate import GenerateSummary, generate
from tests.conftest import FIXTURES

SYNTHEA_55 = FIXTURES / "bulk-ndjson" / "synthea-55-patients"
GENERATED_PATIENTS = 200
GENERATED_SEED = 11


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateSummary]:
    """200 patients resampled from the 55 Synthea patients, in files of at most 20,000 lines."""
    out = tmp_path_factory.mktemp("generated") / "export"
    summary = generate(
        SYNTHEA_55, out, GENERATED_PATIENTS, seed=GENERATED_SEED, max_lines=20_000, compresslevel=1
    )
    return out, summary
