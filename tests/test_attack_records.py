"""Attacks on the records' promises (contract: Records). Fails on the branch point."""

from __future__ import annotations

import json
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


# Deliberate (docs/usage.md, dedupe): a URL's user:password never reaches a file name or its
# hash, so a URL with credentials and the same URL without would share one path, which the
# contract forbids of different URLs. They are one URL to dedupe: the first listed is fetched,
# once, and the other line is not requested.
def test_a_url_with_credentials_is_deduped_against_the_same_url_without(tmp_path) -> None:
    from tests.conftest import run_cli

    with raw_server() as server:
        server.answers["/x"] = (
            b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        plain = server.url("/x")
        with_credentials = plain.replace("http://", "http://user:pw@")
        args = ("--jsonl", "-q", "-t", "1", "--retries", "0", "-o", str(tmp_path / "out"))
        result = run_cli(*args, plain, with_credentials)
        assert len(server.received) == 1, server.received
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line]
    assert (record["url"], record["status"]) == (plain, 401)
