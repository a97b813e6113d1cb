"""What each entry needs, by table: `plan` runs without threads, servers or a disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetcher.http import Validators
from fetcher.inputs import Entry
from fetcher.plan import plan
from fetcher.records import Copy, Known, Record
from fetcher.settings import Settings
from fetcher.task import Task

URL = "http://u:secret@example.com/a"
NAME = "http://***@example.com/a"
ENTRY = Entry(URL, "urls.txt line 1")
COPY = Copy("example.com/a~x.html", 10, "ab" * 32, "text/html", "utf-8", '"v1"', None)
BARE = Copy("example.com/a~x.html", 10, "ab" * 32)  # saved without validators
OUT = Settings(out=Path("out"))
RESUME = Settings(out=Path("out"), resume=True)
REFRESH = Settings(out=Path("out"), refresh=True)


def on_disk(path: Path) -> bool:
    return True


def gone(path: Path) -> bool:
    return False


def test_a_bad_line_is_a_failed_record_naming_its_line() -> None:
    entry = Entry.bad("ftp://x", "urls.txt line 7", "unsupported scheme 'ftp'")
    record = plan(entry, None, OUT, 1)
    assert isinstance(record, Record) and record.outcome == "failed"
    assert record.error == "unsupported scheme 'ftp' (urls.txt line 7)"
    assert record.reason == "unsupported scheme 'ftp'"


@pytest.mark.parametrize(
    ("known", "settings", "expected"),
    [
        (None, OUT, "task"),
        (None, RESUME, "task"),
        (Known("fetched", COPY), OUT, "task"),
        (Known("fetched", COPY), RESUME, "skipped"),
        (Known("not_modified", COPY), RESUME, "skipped"),
        (Known("failed", COPY), RESUME, "task"),  # an old copy, but the latest try failed
        (Known("failed", None), RESUME, "task"),
    ],
)
def test_resume_skips_only_what_was_saved(known, settings, expected) -> None:
    planned = plan(ENTRY, known, settings, 1, exists=on_disk)
    if expected == "task":
        assert isinstance(planned, Task)
    else:
        assert isinstance(planned, Record) and planned.outcome == expected
        assert planned.url == NAME and planned.copy == COPY


@pytest.mark.parametrize(
    ("known", "settings", "exists", "validators"),
    [
        (Known("fetched", COPY), REFRESH, on_disk, Validators('"v1"', None)),
        (Known("fetched", COPY), REFRESH, gone, None),  # a 304 would leave nothing saved
        (Known("fetched", BARE), REFRESH, on_disk, None),  # nothing to send
        (Known("fetched", COPY), OUT, on_disk, None),  # not asked for
        (Known("failed", COPY), REFRESH, on_disk, Validators('"v1"', None)),
    ],
)
def test_refresh_sends_validators_of_a_copy_still_on_disk(
    known, settings, exists, validators
) -> None:
    task = plan(ENTRY, known, settings, 1, exists=exists)
    assert isinstance(task, Task) and task.validators == validators


def test_an_entry_masks_its_credentials_itself() -> None:
    assert ENTRY.name == NAME and Entry.bad("x", "urls.txt line 2", "bad").name == "x"


def test_a_task_fetches_the_url_and_shows_only_its_masked_name() -> None:
    task = plan(ENTRY, Known("fetched", COPY), OUT, 42)
    assert isinstance(task, Task)
    assert (task.id, task.url, task.name, task.host) == (42, URL, NAME, "example.com")
    assert task.saved == COPY  # for `changed`, and the copy a 304 keeps


def test_settings_refuse_two_backends_at_once() -> None:
    with pytest.raises(ValueError, match="either --dask or --processes"):
        Settings(processes=2, dask="local")
    assert Settings(dask="local").backend == "dask"
    assert Settings(processes=2).backend == "processes"
    assert Settings().backend == "threads"
