"""The saved file's mtime is the server's Last-Modified (wget -N): ls -lt and rsync see the
page's age, not the fetch time."""

from __future__ import annotations

import os
import time
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

import pytest

import fetcher
from fetcher.store.pages import modified_at
from tests.server import LAST_MODIFIED


def saved(tmp_path, url: str, **options) -> os.stat_result:
    (record,) = fetcher.fetch([url], out=tmp_path, backoff=0, **options)
    assert record.outcome in ("fetched", "not_modified"), record
    return os.stat(tmp_path / record.path)


def test_the_mtime_is_last_modified(server, tmp_path) -> None:
    stat = saved(tmp_path, server.url("/page/m"))
    assert stat.st_mtime == parsedate_to_datetime(LAST_MODIFIED).timestamp()
    assert abs(stat.st_atime - time.time()) < 60


def test_without_last_modified_the_mtime_is_the_fetch_time(server, tmp_path) -> None:
    stat = saved(tmp_path, server.url("/headers/n"))
    assert abs(stat.st_mtime - time.time()) < 60


def test_a_last_modified_in_the_future_is_not_used(server, tmp_path) -> None:
    future = quote(formatdate(time.time() + 86_400, usegmt=True))
    stat = saved(tmp_path, server.url(f"/headers/f?Last-Modified={future}"))
    assert stat.st_mtime < time.time() + 60


def test_a_304_leaves_the_file_alone(server, tmp_path) -> None:
    """Only a save sets the mtime: a 304 touches nothing on disk."""
    (record,) = fetcher.fetch([server.url("/page/k")], out=tmp_path)
    os.utime(tmp_path / record.path, (1e9, 1e9))
    again = saved(tmp_path, server.url("/page/k"), refresh=True)
    assert again.st_mtime == 1e9 and server.recorder.total() == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 1445412480.0),  # RFC 850, still to be read
        ("Wed Oct 21 07:28:00 2015", 1445412480.0),  # asctime
        ("yesterday", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2099 07:28:00 GMT", None),  # later than now
    ],
)
def test_modified_at(value, expected) -> None:
    assert modified_at(value) == expected
