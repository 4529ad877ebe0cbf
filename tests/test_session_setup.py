"""The test session's own set-up (pyproject's pytest options, tests/conftest.py), checked in a
pytest of its own so that a silent skip or a leaked setting shows up as a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_cds_environment

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(
    tmp_path: Path, source: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `source` as a test module with the project's pytest configuration."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(source)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            "-p",
            "no:cacheprovider",
            "-q",
            *options,
            str(probe),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_parametrisation_over_no_fixture_files_fails(tmp_path: Path) -> None:
    source = (
        "import pytest\n"
        "from pathlib import Path\n\n"
        "@pytest.mark.parametrize('path', sorted(Path('/nonexistent').glob('*.json')))\n"
        "def test_each(path):\n"
        "    assert path\n"
    )
    result = run_pytest(tmp_path, source)
    assert result.returncode != 0, result.stdout
    assert "Empty parameter set in 'test_each'" in result.stdout + result.stderr


def test_exported_cds_settings_do_not_reach_the_tests(tmp_path: Path) -> None:
    source = (
        "import os\n"
        "from cds_service.config import Settings\n\n"
        "def test_settings(settings: Settings) -> None:\n"
        "    assert settings.hook_budget_seconds == 2.0\n"
        "    assert settings.auth == 'disabled' and settings.public_base_url is None\n"
        "    assert 'CDS_HOOK_BUDGET_SECONDS' not in os.environ\n"
        "    assert os.environ['CDS_TEST_POSTGRES_URL'] == 'postgresql://kept@127.0.0.1/x'\n"
    )
    exported = {
        "CDS_HOOK_BUDGET_SECONDS": "0.001",
        "CDS_AUTH": "required",
        "CDS_PUBLIC_BASE_URL": "https://cds.example.org",
        "CDS_TEST_POSTGRES_URL": "postgresql://kept@127.0.0.1/x",
    }
    # tests/conftest.py as a plugin: the probe gets its fixtures and its clean environment.
    result = run_pytest(tmp_path, source, "-p", "tests.conftest", env={**os.environ, **exported})
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_test_variables_are_kept() -> None:
    environ = {
        "CDS_AUTH": "required",
        "CDS_REDIS_URL": "redis://prod",
        "CDS_TEST_POSTGRES_URL": "postgresql://x",
        "HOME": "/root",
    }
    assert clean_cds_environment(environ) == ["CDS_AUTH", "CDS_REDIS_URL"]
    assert environ == {"CDS_TEST_POSTGRES_URL": "postgresql://x", "HOME": "/root"}


REDIS_DATABASE = re.compile(r"redis://127\.0\.0\.1:6379/(\d+)|REDIS_DB = (\d+)")


def test_each_module_that_uses_redis_has_a_database_of_its_own() -> None:
    """Tests flush their Redis database: two modules sharing one would wipe each other's keys
    mid-test when pytest-xdist runs them at once (`make pytest` spreads the suite by file, so a
    module's own tests never run at the same time)."""
    owners: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        numbers = {a or b for a, b in REDIS_DATABASE.findall(text)}
        if not numbers:
            continue
        name = str(path.relative_to(ROOT))
        assert len(numbers) == 1, f"{name} uses Redis databases {sorted(numbers)}"
        (number,) = numbers
        owners.setdefault(number, []).append(name)
    shared = {number: names for number, names in owners.items() if len(names) > 1}
    assert shared == {}
    assert len(owners) >= 7  # the scan finds the modules it is about
