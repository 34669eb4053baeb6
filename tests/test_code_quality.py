"""The code stays ruff- and mypy-clean: checked by the suite, so CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPED_PACKAGES = [
    "pulse_engine",
    *sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("plugins/*/pulse_*")),
    "examples/hello_plugin/src/pulse_hello",
]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a tool of this environment from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = run("mypy", *TYPED_PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr
