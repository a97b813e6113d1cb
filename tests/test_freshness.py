"""--refresh leaves a page still fresh unasked (RFC 9111 §4.2, as a private cache): by table
for the arithmetic, and on a local server for what is asked and what is not."""

from __future__ import annotations

import json
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest

import fetcher
from fetcher.freshness import current_age, directives, fresh_until, lifetime
from fetcher.inputs import Entry
from fetcher.plan import plan
from fetcher.records import Copy, Known, Record
from fetcher.settings import Settings
from fetcher.task import Task
from tests.conftest import invoke, old_index

NOW = 1_700_000_000.0
DATE = formatdate(NOW - 100, usegmt=True)  # the response came 100 s ago, its Date then
BASE = Copy("h/a.html", 1, "00", date=DATE, requested_at=NOW - 101, responded_at=NOW - 100)


def copy(**values: object) -> Copy:
    return replace(BASE, **values)


@pytest.mark.parametrize(
    ("saved", "fresh_for"),
    [
        (copy(cache_control="max-age=3600"), 3600 - 101),  # 100 s resident, 1 s in transit
        (copy(cache_control="public, MAX-AGE=3600, must-revalidate"), 3600 - 101),
        (copy(cache_control="max-age=3600", age="1000"), 3600 - 1101),
        (copy(cache_control="max-age=3600", age="7200"), None),  # Age past max-age
        (copy(cache_control="max-age=0"), None),
        (copy(cache_control="max-age=3600, no-cache"), None),
        (copy(cache_control='no-cache="Set-Cookie", max-age=3600'), None),
        (copy(cache_control="max-age=3600, no-store"), None),
        (copy(cache_control="max-age=oops"), None),  # unreadable: stale
        (copy(cache_control="s-maxage=3600"), None),  # for shared caches only
        (copy(cache_control="max-age=3600", expires=formatdate(NOW - 5, usegmt=True)), 3499),
        (copy(expires=formatdate(NOW + 500, usegmt=True)), 500 - 1),  # Expires - Date - age
        (copy(expires=formatdate(NOW - 5, usegmt=True)), None),  # expired
        (copy(expires="0"), None),  # invalid: expired
        (copy(last_modified=formatdate(NOW - 10**7, usegmt=True)), None),  # no heuristics
        (copy(), None),
        (copy(cache_control="max-age=3600", responded_at=None), None),  # an older index row
        (copy(cache_control="max-age=3600", date=None), 3600 - 101),  # Date: when it came
    ],
)
def test_fresh_until(saved, fresh_for) -> None:
    until = fresh_until(saved, NOW)
    if fresh_for is None:
        assert until is None
    else:
        assert until == pytest.approx(NOW + fresh_for)


def test_current_age_takes_the_servers_clock_into_account() -> None:
    ahead = copy(date=formatdate(NOW - 400, usegmt=True))  # a Date 300 s before it arrived
    assert current_age(ahead, NOW) == pytest.approx(300 + 100)
    assert current_age(copy(age="50"), NOW) == pytest.approx(50 + 1 + 100)
    assert lifetime(copy(cache_control="max-age=60", expires="0")) == 60  # max-age wins
    assert directives("No-Store").no_store and directives(None).max_age is None


FRESH = Known("fetched", copy(cache_control="max-age=3600"))
ENTRY = Entry("http://example.com/a", "line 1")


@pytest.mark.parametrize(
    ("settings", "exists", "outcome"),
    [
        (Settings(refresh=True), True, "fresh"),
        (Settings(refresh=True, revalidate=True), True, None),
        (Settings(refresh=True), False, None),  # the copy is gone: fetch it again
        (Settings(), True, None),  # without --refresh every page is fetched
    ],
)
def test_plan_leaves_a_fresh_page_unasked(settings, exists, outcome) -> None:
    planned = plan(ENTRY, FRESH, settings, 1, exists=lambda _: exists, now=lambda: NOW)
    if outcome is None:
        assert isinstance(planned, Task)
    else:
        assert isinstance(planned, Record) and planned.outcome == outcome
        assert planned.note == "fresh until 2023-11-14T23:11:39Z (RFC 9111): not requested"
        assert planned.copy == FRESH.copy and planned.attempts == 0


def test_revalidate_needs_refresh(tmp_path) -> None:
    result = invoke("--revalidate", "-o", str(tmp_path / "o"), stdin="")
    assert result.returncode == 2 and "--revalidate goes with --refresh" in result.stderr


def headers_url(server, name: str, **headers: str) -> str:
    query = "&".join(f"{key.replace('_', '-')}={quote(v)}" for key, v in headers.items())
    return server.url(f"/headers/{name}?{query}")


def run(tmp_path: Path, *urls: str, options: tuple[str, ...] = ()) -> tuple[int, list[dict]]:
    out = ["-o", str(tmp_path / "out"), "--jsonl", "--summary-json", str(tmp_path / "s.json")]
    result = invoke(*out, *options, *urls)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def test_a_second_refresh_asks_nothing_of_pages_still_fresh(server, tmp_path) -> None:
    urls = [headers_url(server, f"f{i}", Cache_Control="max-age=3600") for i in range(3)]
    run(tmp_path, *urls)
    code, records = run(tmp_path, *urls, options=("--refresh",))
    assert server.recorder.total() == 3  # the first run's requests only
    assert code == 0 and {r["outcome"] for r in records} == {"fresh"}
    assert all(r["note"].startswith("fresh until ") and r["path"] for r in records)
    assert all(r["status"] is None and r["attempts"] == 0 for r in records)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outcomes"]["fresh"] == 3 and summary["exit_code"] == 0
    _, again = run(tmp_path, *urls, options=("--refresh", "--revalidate"))
    assert {r["outcome"] for r in again} == {"not_modified"} and server.recorder.total() == 6
    _, resumed = run(tmp_path, *urls, options=("--resume",))
    assert {r["outcome"] for r in resumed} == {"skipped"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache_Control": "max-age=0"},
        {"Cache_Control": "no-cache"},
        {"Cache_Control": "max-age=3600, no-cache"},
        {"Cache_Control": "no-store, max-age=3600"},
        {"Expires": "Thu, 01 Jan 2015 00:00:00 GMT"},
        {"Cache_Control": "max-age=3600", "Age": "7200"},
        {"Cache_Control": "max-age=1, must-revalidate", "Age": "5"},
        {},  # no freshness given, Last-Modified alone
    ],
)
def test_pages_not_fresh_are_revalidated(server, tmp_path, headers) -> None:
    headers.setdefault("Last_Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
    url = headers_url(server, "s", **headers)
    run(tmp_path, url)
    _, (record,) = run(tmp_path, url, options=("--refresh",))
    assert record["outcome"] == "not_modified" and server.recorder.total() == 2
    (_, asked), *_ = server.recorder.headers.values()
    assert "If-None-Match" in asked


def test_an_index_from_before_freshness_is_read_migrated_and_freshened(server, tmp_path) -> None:
    old = old_index(tmp_path / "out")
    url = headers_url(server, "m", Cache_Control="max-age=3600")
    (page,) = fetcher.fetch([url], out=tmp_path / "elsewhere")
    old.execute(
        "INSERT INTO pages (url, outcome, path, bytes, sha256, etag) VALUES (?,?,?,?,?,?)",
        (url, "fetched", page.path, page.bytes, page.sha256, '"m-v0"'),
    )
    old.commit()
    old.close()
    (tmp_path / "out" / page.path).parent.mkdir(parents=True)
    (tmp_path / "out" / page.path).write_bytes((tmp_path / "elsewhere" / page.path).read_bytes())
    _, (record,) = run(tmp_path, url, options=("--refresh",))
    assert record["outcome"] == "not_modified"  # nothing known of freshness: asked
    # the 304 freshens the saved page (RFC 9111 §4.3.4): its max-age holds from now on
    _, (record,) = run(tmp_path, url, options=("--refresh",))
    assert record["outcome"] == "fresh" and server.recorder.total() == 2
