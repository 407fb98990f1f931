"""Choosing the store from ``--store``: a SQLite file, or a ``postgresql://`` URI.

SQLite suits one host (several server processes may share the file); PostgreSQL suits replicas
on several hosts. A PostgreSQL password comes from TILEFN_STORE_PASSWORD or from a file
(``--store-password-file``), never from the URI, and is never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._config import ConfigError, ServerConfig
from ._postgres import PostgresStore, describe, is_postgres
from ._sqlite import SqliteStore
from ._store import Store

PASSWORD_VARIABLE = "TILEFN_STORE_PASSWORD"


def open_store(location: str, password_file: str = "") -> Store:
    """Open (and migrate) the store ``location`` names; ConfigError if it cannot be used."""
    if is_postgres(location):
        return PostgresStore(location, password=store_password(password_file))
    return SqliteStore(location)


def store_password(password_file: str) -> str | None:
    """The file's first line if a file is named, else TILEFN_STORE_PASSWORD, else None (libpq
    then looks in PGPASSWORD and ~/.pgpass)."""
    if password_file:
        try:
            lines = Path(password_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read --store-password-file: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError("--store-password-file is not UTF-8 text") from None
        if not lines or not lines[0]:
            raise ConfigError("--store-password-file is empty")
        return lines[0]
    return os.environ.get(PASSWORD_VARIABLE) or None


def check_store_settings(config: ServerConfig) -> None:
    """Refuse, before anything starts, settings a PostgreSQL store cannot work with."""
    if not is_postgres(config.store):
        return
    describe(config.store)  # no password in the URI
    if not config.results_dir:
        raise ConfigError(
            "a PostgreSQL --store needs --results-dir: stored results are not kept in the "
            "database, and replicas must share where they are"
        )
