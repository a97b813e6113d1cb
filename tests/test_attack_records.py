"""Attacks on the records' promises (contract: Records). Fails on the branch point."""

from __future__ import annotations

from dataclasses import replace

from fetcher.pools.threads import run_task
from fetcher.settings import Settings
from fetcher.task import Task
from tests.rawserver import raw_server


# The contract: `status` is the "last HTTP status code, or null". A URL that fails for having
# more redirects than --max-redirect got an HTTP status (a 302 here) on every hop; its record
# says null, as if no server had answered.
def test_a_redirect_limit_failure_keeps_the_last_status(settings: Settings) -> None:
    quick = replace(settings, retries=0, timeout=3, max_redirects=2)
    with raw_server() as server:
        server.answers["/loop"] = (
            b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nConnection: close\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        record = run_task(Task(1, server.url("/loop"), server.url("/loop")), quick)
    assert record.outcome == "failed" and "redirects" in (record.error or "")
    assert record.status == 302
