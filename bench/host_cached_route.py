"""Benchmark: Pulse's cached metric-style route against a plain Quart JSON route.

Both apps run on Hypercorn with the same settings (one uvloop worker) on loopback; ``wrk``
loads each in turn, interleaved over several rounds, and the median requests per second
are compared. The Pulse route does everything a real one does on a hit: bearer-token
check, tenant capability gate, role check and a cache lookup (in-process, then Redis).

    .venv/bin/python bench/host_cached_route.py [--seconds 10] [--rounds 3]

Needs ``wrk`` (Debian package) and, for the Redis case, Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pulse_engine.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 32
QUERY = "start=2026-01-01&end=2026-04-01"




def start_server(module: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Run one app on Hypercorn with the shared settings."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--worker-class",
            "uvloop",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
            module,
        ],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str, headers: dict[str, str], timeout: float = 60.0) -> dict[str, str]:
    """Poll until the URL answers 200; return the response headers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
                if response.status == 200:
                    return dict(response.headers)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def run_wrk(url: str, seconds: int, headers: dict[str, str]) -> float:
    """Requests per second measured by wrk."""
    command = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses from {url}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


async def prepare(database_url: str, secret: str) -> str:
    """Migrate, create a tenant and an analyst; return that analyst's access token."""
    from pulse_engine.runtime import running_engine
    from pulse_engine.settings import Settings
    from pulse_engine.testing import create_tenant, create_user, token_for

    settings = Settings(
        _env_file=None,
        database_url=database_url,
        jwt_secret_key=secret,  # type: ignore[call-arg]
        log_level="WARNING",
    )
    async with running_engine(settings, migrate=True) as engine:
        tenant_id = await create_tenant(engine)
        user = await create_user(engine, tenant_id, "analyst")
        # a day-long token so a long run never crosses its expiry
        return token_for(engine, user)


def main() -> None:
    """Run the benchmark and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.setdefault("XDG_RUNTIME_DIR", data_dir)
        from pulse_engine.embedded import open_embedded_server

        server = open_embedded_server(Path(data_dir) / "pg")
        database_url = server.get_uri()
        secret = secrets.token_urlsafe(48)
        token = asyncio.run(prepare(database_url, secret))
        auth = {"Authorization": f"Bearer {token}"}
        base_env = {
            "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": secret,
            "PULSE_LOG_LEVEL": "WARNING",
            "PULSE_DATA_DIR": data_dir,
        }
        cases = {
            "plain Quart route": ("bench.plain_app:app", {}, "/api/v1/plain", {}),
            "Pulse cached route, in-process cache": (
                "bench.cached_route_app:app",
                base_env,
                f"/api/v1/bench/metric?{QUERY}",
                auth,
            ),
            "Pulse cached route, Redis cache": (
                "bench.cached_route_app:app",
                {**base_env, "REDIS_URL": args.redis_url},
                f"/api/v1/bench/metric?{QUERY}",
                auth,
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        processes = []
        urls = {}
        try:
            for name, (module, env, path, headers) in cases.items():
                port = free_port()
                processes.append(start_server(module, port, env))
                urls[name] = f"http://127.0.0.1:{port}{path}"
                wait_ready(urls[name], headers)
                seen = wait_ready(urls[name], headers)
                if headers and seen.get("x-cache") != "hit":
                    raise RuntimeError(f"{name}: second request was not a cache hit: {seen}")
            for _ in range(args.rounds):
                for name, (_module, _env, _path, headers) in cases.items():
                    results[name].append(run_wrk(urls[name], args.seconds, headers))
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
            server.cleanup()

    baseline = statistics.median(results["plain Quart route"])
    print(f"{'case':40} {'median req/s':>12} {'ratio':>6}   rounds")
    for name, values in results.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{value:.0f}" for value in values)
        print(f"{name:40} {median:12.0f} {median / baseline:6.2f}x  {rounds}")


if __name__ == "__main__":
    main()
