"""--warc's pure parts by table: which members of a file taken up are whole, masking, heads."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import pytest

pytest.importorskip("warcio")

from fetcher.capture import Exchange
from fetcher.store.warc import whole_members
from fetcher.store.warcrecords import mask_secrets, target_uri


def member(size: int, said: int | None = None) -> bytes:
    """A record of `size` bytes of block as one gzip member, its Content-Length `said`."""
    head = b"WARC/1.1\r\nWARC-Type: resource\r\nContent-Length: %d\r\n\r\n" % (said or size)
    # mtime 0: the same bytes, so the same test ids, in every test worker
    return gzip.compress(head + b"x" * size + b"\r\n\r\n", mtime=0)


A, B = member(10), member(300_000)


@pytest.mark.parametrize(
    ("data", "whole"),
    [
        (b"", []),
        (A + B, [(0, len(A)), (len(A), len(A) + len(B))]),
        (A + B[:-3], [(0, len(A))]),  # cut in the gzip trailer
        (A + B[: len(B) // 2], [(0, len(A))]),  # cut in the middle
        (A + b"\x1f\x8b", [(0, len(A))]),  # a member's first bytes only
        (A + b"not gzip at all" + A, [(0, len(A))]),  # what follows garbage is not trusted
        (A + member(10, said=12) + A, [(0, len(A))]),  # a block shorter than it says
        (gzip.compress(b"no warc here", mtime=0) + A, []),
    ],
)
def test_whole_members(data: bytes, whole: list[tuple[int, int]]) -> None:
    assert whole_members(data) == whole


def test_secrets_masked_in_request_heads() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dTpw\r\ncookie: a=1; b=2\r\n"
        b"Proxy-Authorization: x\r\nX-Other: keep\r\n\r\n"
    )
    assert mask_secrets(head) == (
        b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: ***\r\ncookie: ***\r\n"
        b"Proxy-Authorization: ***\r\nX-Other: keep\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("url", "secrets", "uri"),
    [
        ("http://u:p@h/x?y", False, "http://h/x?y"),
        ("http://u:p@h/x?y", True, "http://u:p@h/x?y"),
        ("https://h/a@b", False, "https://h/a@b"),  # an @ in the path is no userinfo
    ],
)
def test_target_uri(url: str, secrets: bool, uri: str) -> None:
    assert target_uri(url, secrets) == uri


def test_a_dechunked_head_says_so() -> None:
    exchange = Exchange("http://h/", datetime.now(timezone.utc))
    exchange.status_line = "HTTP/1.1 200 OK"
    exchange.headers = [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")]
    exchange.body += b"abc"
    assert exchange.response_head() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        b"X-Archive-Orig-Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    )
    exchange.headers = [("Content-Length", "3")]
    assert exchange.response_head() == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
