"""The test session's own set-up (pyproject's pytest options, tests/conftest.py), checked in a
pytest of its own so that a silent skip or a leaked setting shows up as a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
