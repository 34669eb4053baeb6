"""An answer given before the request body arrived keeps the connection usable (issue 11.5).

Run against a real ``pulse serve`` on loopback, over a raw socket, as a client library
reusing a keep-alive connection would: the request's headers, then its body a moment later,
then the next request on the same connection.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from pulse_engine.testing import TEST_JWT_SECRET, free_port


@pytest.fixture(scope="module")
async def server_port(
    pulse_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": pulse_database_url,
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "PULSE_DATA_DIR": str(tmp_path_factory.mktemp("serve")),
        "PULSE_AUTO_MIGRATE": "true",
        "PULSE_LOG_LEVEL": "WARNING",
        "PULSE_PLUGINS": "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pulse_engine.cli", "serve", "--port", str(port), "--workers", "1",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


BODY = b'{"name": "' + b"x" * 3000 + b'"}'
LATE_BODY_REQUEST = (
    b"POST /api/v1/admin/api-keys HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
)
NEXT_REQUEST = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize(
    "first_line",
    [
        b"POST /api/v1/admin/api-keys HTTP/1.1",  # 401: the gate answers before the body
        b"PATCH /health/live HTTP/1.1",  # 405: no view reads the body
    ],
)
async def test_the_next_request_on_the_connection_is_answered(
    server_port: int, first_line: bytes
) -> None:
    request = LATE_BODY_REQUEST.replace(LATE_BODY_REQUEST.split(b"\r\n")[0], first_line)
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(0.05)  # the body follows the headers a moment later
        writer.write(BODY)
        writer.write(NEXT_REQUEST)
        await writer.drain()
        first_status, first_headers, _ = await read_response(reader)
        assert first_status in (401, 405)
        assert first_headers.get("connection") != "close"
        second_status, _, second_body = await read_response(reader)
        assert second_status == 200, second_body
        writer.close()


async def test_a_body_that_never_comes_closes_the_connection_openly(server_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
    writer.write(LATE_BODY_REQUEST)
    await writer.drain()
    status, headers, _ = await read_response(reader)
    assert status == 401
    assert headers.get("connection") == "close"
    writer.close()
