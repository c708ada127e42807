"""Which store a server's history lives in: the SQLite file of ``VOICE_DB`` by default, PostgreSQL when
``VOICE_DATABASE_URL`` names a database (several processes, on several hosts, sharing it; ``voice[postgres]``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import Settings
from .sqlite import SQLiteStore
from .store import Store

POSTGRES_SCHEMES = ("postgresql", "postgres")
INSTALL_POSTGRES = "pip install 'voice[postgres]'"


class StoreConfigError(ValueError):
    """The configured database cannot be used; the message says why in one line (never the URL's password)."""


def open_store(settings: Settings) -> Store:
    """The store ``settings`` ask for (not started): :class:`~voice.history.postgres.PostgresStore` for a
    ``postgresql://`` ``database_url``, else :class:`~voice.history.sqlite.SQLiteStore` on ``db_path``."""
    url = settings.database_url
    if not url:
        return SQLiteStore(settings.db_path)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in POSTGRES_SCHEMES:
        raise StoreConfigError(
            f"VOICE_DATABASE_URL must be a postgresql:// URL, not {scheme or 'a schemeless'} one "
            "(for SQLite, set VOICE_DB to a file instead)"
        )
    try:
        from .postgres import PostgresStore
    except ImportError:
        raise StoreConfigError(
            f"VOICE_DATABASE_URL is a PostgreSQL URL, which needs asyncpg: {INSTALL_POSTGRES}"
        ) from None
    return PostgresStore(url)
