"""A typed TypeScript client generated from ``/openapi.json`` type-checks (issue 10 item 4).

This is what the React frontend does: ``openapi-typescript`` turns the document of the
app with every installed plugin into types, and ``tsc`` checks
``clients/typescript/src/usage.ts`` (login, the metric catalog, a DORA summary, the ETL
jobs list) against them. The usage file also holds misuses marked ``@ts-expect-error``,
so a document that lost a schema or a parameter fails the check too; the second test
shows it does. The node packages are those of ``clients/typescript/package-lock.json``
(``npm ci --prefix clients/typescript``, which ``.ci/run`` runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pulse_engine.settings import Settings
from pulse_engine.testing import running_app

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "typescript"
BIN = CLIENT / "node_modules" / ".bin"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="Node.js is not installed (the TypeScript client check needs node)"
)


def install_packages() -> None:
    """The client's pinned packages, installed from its lock file when they are missing."""
    if (BIN / "openapi-typescript").exists() and (BIN / "tsc").exists():
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is missing: install Node.js with npm"
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT, capture_output=True, text=True,
        timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def type_check(spec: dict[str, Any], work: Path) -> subprocess.CompletedProcess[str]:
    """Generate the types of ``spec`` next to a copy of the usage file and run ``tsc``."""
    (work / "src").mkdir()
    shutil.copy(CLIENT / "tsconfig.json", work / "tsconfig.json")
    shutil.copy(CLIENT / "src" / "usage.ts", work / "src" / "usage.ts")
    document = work / "openapi.json"
    document.write_text(json.dumps(spec))
    generated = subprocess.run(
        [str(BIN / "openapi-typescript"), str(document), "--output",
         str(work / "src" / "pulse-api.d.ts")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    return subprocess.run(
        [str(BIN / "tsc"), "--noEmit", "-p", str(work / "tsconfig.json")],
        capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.fixture
async def spec(pulse_settings: Settings) -> dict[str, Any]:
    """``/openapi.json`` of the app with every installed plugin."""
    install_packages()
    async with running_app(pulse_settings) as app:
        document: dict[str, Any] = await (await app.test_client().get("/openapi.json")).get_json()
    assert {"/api/v1/metrics", "/api/v1/metrics/dora/summary", "/app/etl/jobs"} <= set(
        document["paths"]
    )
    return document


async def test_the_generated_client_type_checks(spec: dict[str, Any], tmp_path: Path) -> None:
    checked = type_check(spec, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_lost_schema_fails_the_check(spec: dict[str, Any], tmp_path: Path) -> None:
    answer = spec["paths"]["/api/v1/metrics/dora/summary"]["get"]["responses"]["200"]
    answer["content"]["application/json"]["schema"] = {}
    checked = type_check(spec, tmp_path)
    assert checked.returncode != 0
    assert "usage.ts" in checked.stdout, checked.stdout
