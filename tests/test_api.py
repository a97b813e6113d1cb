"""The library API, the index, and re-runs (--resume, --refresh, `changed`)."""

from __future__ import annotations

import sqlite3

import pytest

import fetcher
from fetcher.errors import OutDirBusy

FAST = {"threads": 4, "backoff": 0, "timeout": 5}


def run(urls, out, **options):
    return {r.url: r for r in fetcher.fetch(urls, out=out, **{**FAST, **options})}


def test_fetch_yields_records(server, tmp_path) -> None:
    urls = [server.url("/page/a"), "nonsense", server.url("/status/404")]
    records = run(urls, tmp_path)
    assert records[urls[0]].outcome == "fetched"
    assert records["nonsense"].error == "not a URL: it needs http:// or https:// in front (item 2)"
    assert records[urls[2]].status == 404
    assert (tmp_path / records[urls[0]].path).is_file()


def test_out_dir_lock(server, tmp_path) -> None:
    first = fetcher.fetch([server.url("/page/a")], out=tmp_path, **FAST)
    next(first)  # the run is open and holds the lock
    with pytest.raises(OutDirBusy, match="in use by another fetcher run"):
        next(fetcher.fetch([server.url("/page/b")], out=tmp_path, **FAST))
    first.close()
    assert run([server.url("/page/b")], tmp_path)  # released


def test_index_holds_the_latest_record(server, tmp_path) -> None:
    url = server.url("/page/i")
    record = run([url], tmp_path)[url]
    db = sqlite3.connect(tmp_path / ".fetcher/index.sqlite3")
    row = db.execute(
        "SELECT outcome, path, sha256, etag, last_modified FROM pages WHERE url=?", (url,)
    ).fetchone()
    assert row == ("fetched", record.path, record.sha256, '"i-v0"', "Wed, 21 Oct 2015 07:28:00 GMT")


def test_resume_skips_what_was_fetched(server, tmp_path) -> None:
    done, missing = server.url("/page/done"), server.url("/status/500")
    run([done, missing], tmp_path, retries=0)
    before = server.recorder.total()
    records = run([done, missing], tmp_path, resume=True, retries=0)
    assert records[done].outcome == "skipped" and records[done].path
    assert records[missing].outcome == "failed"  # failed ones are tried again
    assert server.recorder.total() == before + 1


def test_refresh_sends_validators_and_keeps_the_file(server, tmp_path) -> None:
    url = server.url("/page/r")
    first = run([url], tmp_path)[url]
    saved = tmp_path / first.path
    mtime = saved.stat().st_mtime_ns
    second = run([url], tmp_path, refresh=True)[url]
    assert (second.outcome, second.status, second.path) == ("not_modified", 304, first.path)
    assert second.sha256 == first.sha256 and second.changed is False
    assert server.recorder.headers["/page/r"][-1]["If-None-Match"] == '"r-v0"'
    assert saved.stat().st_mtime_ns == mtime
    server.versions["r"] += 1  # the page changes on the server
    third = run([url], tmp_path, refresh=True)[url]
    assert (third.outcome, third.changed) == ("fetched", True)
    assert b"version 1" in saved.read_bytes()


def test_changed_against_the_previous_copy(server, tmp_path) -> None:
    url = server.url("/page/c")
    assert run([url], tmp_path)[url].changed is None  # first fetch
    assert run([url], tmp_path)[url].changed is False
    server.versions["c"] += 1
    assert run([url], tmp_path)[url].changed is True


def test_failure_keeps_what_the_index_knows_of_the_copy(server, tmp_path) -> None:
    url = server.url("/flaky/1/500/keep")
    good = run([url], tmp_path, retries=1)[url]  # 500, then the page
    server.flaky["keep"] = -5  # five more failures
    bad = run([url], tmp_path, retries=0)[url]
    assert bad.outcome == "failed"
    db = sqlite3.connect(tmp_path / ".fetcher/index.sqlite3")
    row = db.execute("SELECT outcome, path, sha256 FROM pages WHERE url=?", (url,)).fetchone()
    assert row == ("failed", good.path, good.sha256)


def test_leaving_early_stops_the_reader(server, tmp_path) -> None:
    import threading

    records = fetcher.fetch((server.url(f"/page/{i}") for i in range(500)), out=tmp_path, **FAST)
    next(records)
    records.close()
    for _ in range(40):
        if not any(t.name == "fetcher-reader" for t in threading.enumerate()):
            break
        threading.Event().wait(0.05)
    assert not any(t.name == "fetcher-reader" for t in threading.enumerate())


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
@pytest.mark.parametrize("pool", [{"threads": 1}, {"processes": 2, "threads": 2}])
def test_leaving_early_starts_nothing_more(server, tmp_path, pool) -> None:
    """Tasks waiting in the pool when the consumer stops are dropped, not fetched: leaving
    takes as long as the pages already started, and no longer."""
    import time

    urls = [server.url(f"/slow/1?{i}") for i in range(40)]
    for _ in fetcher.fetch(urls, out=tmp_path, per_host=100, **pool):
        left = time.monotonic()  # counted from here, not from the start of worker processes,
        break  # which a loaded machine can stretch by seconds
    # those running at the break (1 s pages), not those waiting: 39 s with one thread
    assert time.monotonic() - left < 3
    assert server.recorder.total() <= 2 * pool["threads"] * pool.get("processes", 1)


def test_a_slow_producer_does_not_widen_the_read_ahead(server, tmp_path) -> None:
    """Entries trickling in leave workers idle for want of input, not because of host
    limits: the run must not read further ahead for that, or a burst afterwards would be
    read far ahead into memory."""
    import threading

    produced = 0

    def slowly_then_all_at_once():
        nonlocal produced
        for i in range(1040):
            if i < 40:
                threading.Event().wait(0.01)
            produced += 1
            yield server.url(f"/page/s{i}")

    from fetcher.pools.base import BATCH

    threads = 2
    capacity = threads + max(threads, BATCH)  # tasks running, and waiting to start
    read_ahead = 2 * capacity + 16  # the reader's distance: twice the pool's capacity, and 16
    most_ahead = consumed = 0
    for _ in fetcher.fetch(slowly_then_all_at_once(), out=tmp_path, threads=threads, backoff=0):
        consumed += 1
        most_ahead = max(most_ahead, produced - consumed)
    assert consumed == 1040
    assert most_ahead <= read_ahead + capacity + 1  # + those in the pool, + one awaiting credit
