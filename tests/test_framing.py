"""Strict framing (fetcher.framing): what a strict HTTP/1.1 reader (RFC 9112) would not
deliver is never saved. Every case issue 23 lists, on a raw socket: the outcome, and that
nothing is saved (or that a copy saved before is untouched by a --refresh that met it)."""

from __future__ import annotations

import gzip
import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from fetcher.framing import StrictResponse
from fetcher.pools.threads import run_task
from fetcher.records import Record
from fetcher.settings import Settings
from fetcher.task import Task
from tests.conftest import run_cli
from tests.rawserver import RawServer, raw_server

INVALID = "the server's answer is not valid HTTP"
PLAIN = "Content-Type: text/plain\r\n"


@pytest.fixture(scope="module")
def server():
    with raw_server() as running:
        yield running


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return replace(settings, retries=0, timeout=5, max_size=1000)


def fetched(server: RawServer, answer: bytes, settings: Settings, path: str = "/p") -> Record:
    """The record of fetching an answer; asserts that a failure saved nothing."""
    server.answers[path] = answer
    record = run_task(Task(1, server.url(path), server.url(path)), settings)
    if record.outcome == "failed":
        assert record.path is None and not pages(settings.out)
    return record


def pages(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and ".fetcher" not in p.parts]


def saved(record: Record, settings: Settings) -> bytes:
    assert record.outcome == "fetched", record.error
    assert record.path is not None
    return (settings.out / record.path).read_bytes()


# A header line a lenient parser stops at, hiding every header after it.
BAD_LINES = {
    "no colon": b"X-Bad\r\n",
    "space before colon": b"X-Bad : v\r\n",
    "control byte in name": b"X-B\x01ad: v\r\n",
    "non-ASCII byte in name": b"X-B\xe9d: v\r\n",
    "bare CR in value": b"X-Bad: a\rb\r\n",
}
GZIPPED = gzip.compress(b"hello")
# What the hidden headers would have changed.
HIDDEN = {
    "gzip body": (b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(GZIPPED), GZIPPED),
    "chunked": (b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "conflicting lengths": (b"Content-Length: 5\r\nContent-Length: 10\r\n", b"helloEXTRA"),
    "over --max-size": (b"Content-Length: 2000\r\n", b"a" * 2000),
}


@pytest.mark.parametrize("bad", sorted(BAD_LINES))
@pytest.mark.parametrize("hidden", sorted(HIDDEN))
def test_a_malformed_header_line_fails_the_answer(server, quick, bad, hidden) -> None:
    headers, body = HIDDEN[hidden]
    answer = b"HTTP/1.1 200 OK\r\n" + PLAIN.encode() + BAD_LINES[bad] + headers + b"\r\n" + body
    record = fetched(server, answer, quick)
    assert record.outcome == "failed" and record.error is not None
    assert record.error.startswith(INVALID)


@pytest.mark.parametrize(
    "head", [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1."]
)
def test_a_head_cut_short_fails(server, quick, head) -> None:
    record = fetched(server, head, quick)
    assert record.outcome == "failed" and record.error == f"{INVALID} (cut short inside its head)"


def test_nothing_at_all_is_no_answer(server, quick) -> None:
    record = fetched(server, b"", quick)
    assert record.error in (
        "server closed the connection without answering",
        "connection reset by the server",  # (as the kernel tells it)
    )


def chunked(body: bytes, *headers: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\n"
        + PLAIN.encode()
        + b"".join(headers)
        + (b"Transfer-Encoding: chunked\r\n\r\n" + body)
    )


@pytest.mark.parametrize(
    "size", [b"+5", b"0x5", b"1_0", b" 5", b"\t30", b"5\r", b"-5", b"5 5", b"123456789012345678901"]
)
def test_chunk_sizes_are_hex_digits_only(server, quick, size) -> None:
    record = fetched(server, chunked(size + b"\r\nhello\r\n0\r\n\r\n"), quick)
    assert record.outcome == "failed" and record.error.startswith(INVALID), record.error


@pytest.mark.parametrize("last", [b"-0", b"0x0", b"+0"])
def test_the_last_chunk_is_zero(server, quick, last) -> None:
    record = fetched(server, chunked(b"5\r\nhello\r\n" + last + b"\r\n\r\n"), quick)
    assert record.outcome == "failed" and record.error.startswith(INVALID), record.error


@pytest.mark.parametrize(
    # (b"6\r\nhello\r\n0..." is "hello\r" and a bare LF, accepted as browsers and curl do)
    "body",
    [b"5\r\nhelloXY0\r\n\r\n", b"7\r\nhello\r\n0\r\n\r\n", b"5\r\nhello0\r\n\r\n"],
)
def test_chunk_data_is_followed_by_crlf(server, quick, body) -> None:
    record = fetched(server, chunked(body), quick)
    assert record.outcome == "failed" and record.error.startswith(INVALID), record.error


def test_a_chunked_body_cut_short_is_a_broken_connection(server, quick) -> None:
    record = fetched(server, chunked(b"5\r\nhello\r\n"), quick)
    assert record.outcome == "failed" and record.error.startswith("connection broke after")


@pytest.mark.parametrize(
    "body", [b"5\r\nhello\r\n0\r\n\r\n", b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"]
)
def test_good_chunked_bodies_are_whole(server, quick, body) -> None:
    assert saved(fetched(server, chunked(body), quick), quick) == b"hello"


@pytest.mark.parametrize("stray", [b"\x0b", b"\xa0", b"\x1c", b"\x85", b"\x0c"])
def test_content_length_is_ascii_digits_only(server, quick, stray) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5" + stray + b"\r\n\r\nhello"
    record = fetched(server, answer, quick)
    assert record.outcome == "failed" and record.error.startswith(INVALID), record.error


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"], ids=["length", "te"]
)
def test_a_204_has_no_body_whatever_it_declares(server, quick, framing) -> None:
    body = b"hello" if b"Length" in framing else b"5\r\nhello\r\n0\r\n\r\n"
    answer = b"HTTP/1.1 204 No Content\r\n" + PLAIN.encode() + framing + b"\r\n" + body
    record = fetched(server, answer, quick)
    assert saved(record, quick) == b"" and record.status == 204


def test_informational_answers_have_no_body(server, quick) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n" + PLAIN.encode() + b"Content-Length: 5\r\n\r\nhello"
    )
    assert saved(fetched(server, answer, quick), quick) == b"hello"


def response_to(method: str, answer: bytes) -> bytes:
    """The body StrictResponse reads from `answer` to a request of `method`."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(answer)
        theirs.shutdown(socket.SHUT_WR)
        response = StrictResponse(ours, method=method)
        response.begin()
        return response.read()


@pytest.mark.parametrize("status", [b"200 OK", b"304 Not Modified", b"204 No Content"])
def test_an_answer_to_head_or_without_content_has_no_body(status) -> None:
    answer = b"HTTP/1.1 " + status + b"\r\nContent-Length: 5\r\n\r\nhello"
    assert response_to("HEAD", answer) == b""
    assert response_to("GET", answer) == (b"hello" if status == b"200 OK" else b"")


def test_one_header_line_may_take_most_of_the_256_kib(server, quick) -> None:
    value = b"v" * (200 * 1024)
    answer = b"HTTP/1.1 200 OK\r\nX-Big: " + value + b"\r\nContent-Length: 5\r\n\r\nhello"
    assert saved(fetched(server, answer, quick), quick) == b"hello"


def test_more_than_256_kib_of_head_fails(server, quick) -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (300 * 1024) + b"\r\n\r\nhello"
    record = fetched(server, answer, quick)
    assert record.error == "the server's response headers longer than 256 KiB"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",  # bare LF
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",  # obs-fold
        b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello",  # no reason phrase
        b"HTTP/1.0 200 OK\r\n\r\nhello",  # ends where the connection does
    ],
)
def test_what_browsers_and_curl_accept_is_accepted(server, quick, head) -> None:
    assert saved(fetched(server, head, quick), quick) == b"hello"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/6.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/0.9 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=["2.0", "6.1 204", "0.9 after a 1xx"],
)
def test_a_major_version_other_than_1_is_not_http_1(server, quick, head) -> None:
    """RFC 9110 §2.5: another major version is another protocol, whose framing HTTP/1.1
    cannot read (curl refuses it too); found by the differential test's seed 4100473724."""
    record = fetched(server, head, quick)
    assert record.outcome == "failed" and record.error is not None
    assert record.error.startswith(INVALID) and "is not HTTP/1.x" in record.error


def test_a_later_minor_version_is_read_as_1_1(server, quick) -> None:
    """RFC 9110 §2.5: a higher minor version of a major one implemented is read as the
    highest minor version implemented."""
    answer = b"HTTP/1.2 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert saved(fetched(server, answer, quick), quick) == b"hello"


def test_not_http_at_all_is_said_so(server, quick) -> None:
    record = fetched(server, b"SSH-2.0-OpenSSH_9.2\r\n\r\n", quick)
    assert record.error == "the server's answer is not HTTP"


def test_connections_are_reused(quick) -> None:
    from fetcher.http import get_source
    from fetcher.session import make_session

    with raw_server(keep_alive=True) as server:
        for path in ("/a", "/b", "/c"):
            server.answers[path] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server.answers["/d"] = chunked(b"2\r\nok\r\n0\r\n\r\n")
        server.answers["/e"] = b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
        session = make_session(quick)
        for path in ("/a", "/b", "/d", "/e", "/c"):
            body = get_source(server.url(path), quick, session).body
            assert body == (b"" if path == "/e" else b"ok")
        assert server.connections == 1


def test_bytes_after_the_answer_cost_the_connection(quick) -> None:
    from fetcher.http import get_source
    from fetcher.session import make_session

    with raw_server(keep_alive=True) as server:
        server.answers["/a"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
        server.answers["/b"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        session = make_session(quick)
        assert get_source(server.url("/a"), quick, session).body == b"ok"
        assert get_source(server.url("/b"), quick, session).body == b"ok"
        assert server.connections == 2


GOOD = (
    b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\nhello'
)
BROKEN = {
    "head cut short": b"HTTP/1.1 200 OK\r\n",
    "hidden gzip": b"HTTP/1.1 200 OK\r\nX-Bad : v\r\nContent-Encoding: gzip\r\n\r\n" + GZIPPED,
    "bad chunk": chunked(b"5\r\nhelloXY0\r\n\r\n"),
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\x0b\r\n\r\nworld",
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_refresh_that_meets_a_broken_answer_keeps_the_copy(tmp_path, broken) -> None:
    out = tmp_path / "out"
    with raw_server() as server:
        server.answers["/page"] = GOOD
        args = ("--jsonl", "-q", "--retries", "0", "-o", str(out), server.url("/page"))
        first = json.loads(run_cli(*args).stdout)
        copy = out / first["path"]
        assert copy.read_bytes() == b"hello"
        server.answers["/page"] = BROKEN[broken]
        result = run_cli("--refresh", *args)
    record = json.loads(result.stdout)
    assert record["outcome"] == "failed" and result.returncode == 3
    assert copy.read_bytes() == b"hello" and pages(out) == [copy]


def test_content_encoding_items_are_trimmed_of_ows_only(server, quick) -> None:
    """Found by the differential test: str.strip() took \\x1e and NBSP as white space."""
    for stray in (b"\x1e", b"\xa0", b"\x85"):
        answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: " + stray + b"gzip\r\n"
        answer += b"Content-Length: %d\r\n\r\n" % len(GZIPPED) + GZIPPED
        record = fetched(server, answer, quick)
        assert record.outcome == "failed" and "unsupported Content-Encoding" in record.error


@pytest.mark.parametrize(
    "framing", [b"Transfer-Encoding: gzip\r\n", b"Content-Length: 5\r\nContent-Length: 6\r\n"]
)
def test_a_1xx_before_the_answer_has_no_body_whatever_its_framing_headers_say(
    server, quick, framing
) -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n" + framing + b"\r\n"
    answer = interim + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert saved(fetched(server, answer, quick), quick) == b"hello"
