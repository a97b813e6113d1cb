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


# The contract dedupes "another spelling of the same resource (RFC 3986 §6: case of scheme and
# host, default port, dot segments, percent-encoding of unreserved characters, fragment, empty
# query)". Credentials are none of these: a URL listed without them (401) and then with them is
# fetched once, without, and the credentialed line is never requested (nor recorded).
def test_a_url_with_credentials_is_not_a_duplicate_of_one_without(tmp_path) -> None:
    from tests.conftest import run_cli

    with raw_server() as server:
        server.answers["/x"] = (
            b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        plain = server.url("/x")
        with_credentials = plain.replace("http://", "http://user:pw@")
        args = ("--jsonl", "-q", "-t", "1", "--retries", "0", "-o", str(tmp_path / "out"))
        result = run_cli(*args, plain, with_credentials)
        assert len(server.received) == 2, server.received
    assert len(result.stdout.splitlines()) == 2
