"""SQLite in few steps: many rows per statement, rather than a statement per row.

The sqlite3 module gives up the GIL around every step of a statement, and a thread must
then win it back from busy worker threads; `executemany` steps once per row, and a query
once per row it returns. One statement over many rows steps once. Used by the dedupe set
(inputs) and the index (store).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

MAX_VARIABLES = 999  # SQLite's limit on `?` in one statement before 3.32 (32766 since)


def _parts(items: Sequence[Any], most: int) -> Iterator[Sequence[Any]]:
    """`items` in parts of at most `most`, each a power of two long: a statement is prepared
    once per length and kept in the connection's cache, and a prepared statement over
    hundreds of variables takes tens of kilobytes, so only a few lengths may occur."""
    start, size = 0, 1 << (max(1, most).bit_length() - 1)
    while start < len(items):
        while size > len(items) - start:
            size >>= 1
        yield items[start : start + size]
        start += size


def insert(
    db: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> None:
    """`{head} VALUES (?, …), (?, …) … {tail}` for all `rows` (of one width), in few
    statements. Rows are taken in order, as executemany does: a later row's ON CONFLICT
    sees the earlier rows of the same statement."""
    if not rows:
        return
    width = len(rows[0])
    row = f"({', '.join('?' * width)})"
    for part in _parts(rows, MAX_VARIABLES // width):
        values = [value for item in part for value in item]
        db.execute(f"{head} VALUES {', '.join([row] * len(part))} {tail}", values)


def select_in(db: sqlite3.Connection, query: str, keys: Sequence[Any]) -> Iterator[Any]:
    """The rows of `query`, whose `{}` stands for `?, ?, …`, for all `keys`, in few queries
    (each still steps once per row found)."""
    for part in _parts(keys, MAX_VARIABLES):
        yield from db.execute(query.format(", ".join("?" * len(part))), part)
