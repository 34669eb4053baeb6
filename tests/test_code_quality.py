"""The code stays ruff-, mypy- and import-linter-clean: checked by the suite, so CI enforces it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
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


def lint_imports(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run import-linter (its console script sits beside this interpreter)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), *arguments],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env,
    )


def test_import_linter_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_the_public_api_contract_catches_a_plugin_reaching_inside(tmp_path: Path) -> None:
    package = tmp_path / "pulse_reaching"
    package.mkdir()
    (package / "__init__.py").write_text("from pulse_engine.db import Database\n")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = config["contracts"][0]
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_packages =\n    pulse_engine\n    pulse_reaching\n"
        f"[importlinter:contract:public-api]\nname = {contract['name']}\n"
        f"type = {contract['type']}\nprotected_modules = pulse_engine.*\n"
        "allowed_importers = pulse_engine\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    result = lint_imports("--config", str(tmp_path / ".importlinter"), env=env)
    assert result.returncode != 0
    assert "pulse_reaching -> pulse_engine.db" in result.stdout, result.stdout
