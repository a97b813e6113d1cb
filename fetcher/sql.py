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


def insert(
    db: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> None:
    """`{head} VALUES (?, …), (?, …) … {tail}` for all `rows` (of one width), in as few
    statements as the variable limit allows. Rows are taken in order, as executemany does:
    a later row's ON CONFLICT sees the earlier rows of the same statement."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, MAX_VARIABLES // width)
    row = f"({', '.join('?' * width)})"
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        values = [value for item in part for value in item]
        db.execute(f"{head} VALUES {', '.join([row] * len(part))} {tail}", values)


def select_in(db: sqlite3.Connection, query: str, keys: Sequence[Any]) -> Iterator[Any]:
    """The rows of `query`, whose `{}` stands for `?, ?, …`, for all `keys`: one query per
    MAX_VARIABLES keys (at least one step per row found)."""
    for start in range(0, len(keys), MAX_VARIABLES):
        part = keys[start : start + MAX_VARIABLES]
        yield from db.execute(query.format(", ".join("?" * len(part))), part)
