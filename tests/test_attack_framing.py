"""Attacks on the strict framing (fetcher.framing) that break a promise of docs/fidelity.md
or docs/what-happens.md. Each test fails on the branch point it was written against."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fetcher.pools.threads import run_task
from fetcher.settings import Settings
from fetcher.task import Task
from tests.conftest import run_cli
from tests.rawserver import raw_server
from tests.test_framing import pages, saved


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return replace(settings, retries=0, timeout=3, max_size=1000)


# fidelity.md: "a body with a 1xx, 204 or 304 ... no body, whatever Content-Length or
# Transfer-Encoding say (RFC 9112 §6.3 rule 1): a 204 is saved as an empty page"; what-happens.md:
# "sends a body with a 204 or a 304 | reads no body, whatever Content-Length or Transfer-Encoding
# say". h11 validates Transfer-Encoding and Content-Length while parsing the head, before it
# looks at the status, so these 204s fail (curl saves them as empty pages).
NO_BODY_HEADS = {
    "te gzip": b"Transfer-Encoding: gzip\r\n",
    "te identity": b"Transfer-Encoding: identity\r\n",
    "te gzip, chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "conflicting lengths": b"Content-Length: 5\r\nContent-Length: 6\r\n",
}


@pytest.mark.parametrize("framing", sorted(NO_BODY_HEADS))
def test_a_204_has_no_body_whatever_its_framing_headers_say(quick, framing) -> None:
    with raw_server() as server:
        server.answers["/p"] = b"HTTP/1.1 204 No Content\r\n" + NO_BODY_HEADS[framing] + b"\r\n"
        record = run_task(Task(1, server.url("/p"), server.url("/p")), quick)
    assert record.outcome == "fetched", record.error
    assert saved(record, quick) == b"" and record.status == 204


@pytest.mark.parametrize("framing", sorted(NO_BODY_HEADS))
def test_a_304_to_a_refresh_keeps_the_copy_whatever_its_framing_headers_say(
    tmp_path, framing
) -> None:
    out = tmp_path / "out"
    good = b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: "v1"\r\n'
    good += b"Content-Length: 5\r\n\r\nhello"
    with raw_server() as server:
        server.answers["/page"] = good
        args = ("--jsonl", "-q", "--retries", "0", "-o", str(out), server.url("/page"))
        first = json.loads(run_cli(*args).stdout)
        server.answers["/page"] = (
            b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n' + NO_BODY_HEADS[framing] + b"\r\n"
        )
        result = run_cli("--refresh", *args)
    record = json.loads(result.stdout)
    assert (record["outcome"], result.returncode) == ("not_modified", 0), record["error"]
    assert (out / first["path"]).read_bytes() == b"hello"


# fidelity.md: "bare LF line endings ... accepted: common, unambiguous, and accepted by browsers
# and curl". In a chunked body they are not: h11 looks for CRLF after a chunk size, so the
# answer below (which curl saves as "hello") fails as "connection broke after 0 bytes of the
# body", and on a kept-alive connection waits for --timeout.
def test_bare_lf_line_endings_in_chunked_framing_are_accepted(quick) -> None:
    answer = b"HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n"
    answer += b"5\nhello\n0\n\n"
    with raw_server() as server:
        server.answers["/p"] = answer
        record = run_task(Task(1, server.url("/p"), server.url("/p")), quick)
    assert record.outcome == "fetched", record.error
    assert saved(record, quick) == b"hello"
    assert pages(quick.out)


# RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
# Transfer-Encoding header field MUST treat the message as if the framing is faulty, even if a
# Content-Length is present". h11 de-chunks it and fetcher saves "hi" (a browser would read it
# to the close and keep the chunk framing: the two readers deliver different bytes).
@pytest.mark.parametrize("length", [b"", b"Content-Length: 14\r\n"], ids=["alone", "with length"])
def test_transfer_encoding_in_an_http_1_0_answer_is_faulty_framing(quick, length) -> None:
    answer = (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        + length
        + b"\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    with raw_server() as server:
        server.answers["/p"] = answer
        record = run_task(Task(1, server.url("/p"), server.url("/p")), quick)
    assert record.outcome == "failed" and not pages(quick.out)


# A chunk line is `chunk-size [ chunk-ext ] CRLF`, chunk-ext `*( BWS ";" BWS token [ BWS "="
# BWS ( token / quoted-string ) ] )` (RFC 9112 §7.1, §7.1.1). A bare CR in a chunk line is what
# fidelity.md refuses in a header value (parsers disagree on it); h11 takes anything after ";".
BAD_CHUNK_LINES = {
    "bare CR in extension": b"3;a\rb\r\n",
    "control bytes as extension": b"3;\x01\x7f\r\n",
    "unterminated quoted string": b'3;a="\r\n',
    "semicolon alone": b"3;\r\n",
    "white space and no extension": b"3\t\r\n",
}


@pytest.mark.parametrize("line", sorted(BAD_CHUNK_LINES))
def test_a_chunk_line_outside_the_grammar_fails(quick, line) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer += BAD_CHUNK_LINES[line] + b"abc\r\n0\r\n\r\n"
    with raw_server() as server:
        server.answers["/p"] = answer
        record = run_task(Task(1, server.url("/p"), server.url("/p")), quick)
    assert record.outcome == "failed" and not pages(quick.out)


# fidelity.md's first promise: "a page is saved whole and right, or not at all". fetcher sends
# no Range, so a 206 is a part of the page (here 2 bytes of 100): it is saved as the page,
# `fetched`, and with --refresh would replace a whole copy.
def test_a_206_to_a_request_without_range_is_not_saved_as_the_page(quick) -> None:
    answer = (
        b"HTTP/1.1 206 Partial Content\r\nContent-Type: text/plain\r\n"
        b"Content-Range: bytes 0-1/100\r\nContent-Length: 2\r\n\r\nhi"
    )
    with raw_server() as server:
        server.answers["/p"] = answer
        record = run_task(Task(1, server.url("/p"), server.url("/p")), quick)
    assert record.outcome == "failed" and not pages(quick.out)
