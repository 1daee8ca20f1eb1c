"""``open_store(url)``: a store from its URL.

* ``sqlite:///ABS/PATH`` → ``SQLiteStore("/ABS/PATH")`` (an absolute path,
  percent-encoded where needed; no host, query or fragment);
* ``postgresql://…`` or ``postgres://…`` → ``PostgresStore(url)`` (libpq's URL
  syntax, e.g. ``postgresql://user:secret@db.example:5432/natpool``).

A malformed URL raises ``PoolConfigError`` with ``field == "store"`` (an
``ArgumentError``, the constructor's argument error, as ``natpool.Pool(store=URL)``
raises it) and opens nothing. A store that cannot be opened raises
``StoreError``; a missing psycopg raises ``natpool.extras.MissingExtra``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from natpool.errors import PoolConfigError
from natpool.store.postgres import PostgresStore, redact
from natpool.store.protocol import Store
from natpool.store.sqlite import SQLiteStore

__all__ = ["open_store", "sqlite_path", "SCHEMES"]

SCHEMES = ("sqlite", "postgresql", "postgres")
_USAGE = "use sqlite:///ABS/PATH or postgresql://USER@HOST:PORT/DATABASE"


def open_store(url: str, *, clock: Callable[[], float] | None = None, timeout: float = 5.0) -> Store:
    """Open the store at ``url`` (see the module docstring); ``clock`` and ``timeout`` go to the store."""
    if not isinstance(url, str):
        raise TypeError(f"store URL must be str, not {type(url).__name__}")
    scheme, separator, _ = url.partition("://")
    if not separator:
        raise PoolConfigError("store", f"{redact(url)!r} is not a store URL: {_USAGE}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return SQLiteStore(sqlite_path(url), clock=clock, timeout=timeout)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, clock=clock, timeout=timeout)
    raise PoolConfigError("store", f"unknown store scheme {scheme!r} in {redact(url)!r}: {_USAGE}")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///ABS/PATH`` URL (``PoolConfigError`` for ``store`` if it is malformed)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as error:
        raise PoolConfigError("store", f"{url!r} is not a URL: {error}") from None
    if parts.netloc:
        raise PoolConfigError("store", f"{url!r} names a host ({parts.netloc!r}): use sqlite:///ABS/PATH")
    if parts.query or parts.fragment:
        raise PoolConfigError("store", f"{url!r} has a query or fragment: use sqlite:///ABS/PATH")
    path = urllib.parse.unquote(parts.path)
    if not path.startswith("/") or path.rstrip("/") == "":
        raise PoolConfigError("store", f"{url!r} does not name an absolute file path: use sqlite:///ABS/PATH")
    if path.endswith("/"):
        raise PoolConfigError("store", f"{url!r} names a directory, not a file: use sqlite:///ABS/PATH")
    if "\x00" in path:
        raise PoolConfigError("store", f"{url!r} has a NUL character in its path")
    return path
