"""``pulse serve`` as a real process: it serves, and SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path

from pulse_engine.testing import TEST_JWT_SECRET, free_port


def fetch(url: str) -> tuple[int, bytes]:
    """GET a URL; (status, body), or (0, b"") while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


async def test_serve_answers_and_stops_on_sigterm(pulse_database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": pulse_database_url,
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "PULSE_DATA_DIR": str(tmp_path),
        "PULSE_AUTO_MIGRATE": "true",
        "PULSE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pulse_engine.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/health/ready"
        async with asyncio.timeout(60):
            while (await asyncio.to_thread(fetch, url))[0] != 200:
                await asyncio.sleep(0.2)
        statuses = {(await asyncio.to_thread(fetch, url))[0] for _ in range(6)}
        assert statuses == {200}
        docs_status, docs = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/docs")
        assert docs_status == 200 and b"/static/swagger-ui/" in docs
    finally:
        process.send_signal(signal.SIGTERM)
        return_code = await asyncio.wait_for(process.wait(), 60)
    assert return_code == 0
