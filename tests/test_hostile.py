"""The fetch path against servers that lie, trickle and never stop (tests/hostile.py).

Promises under test: --timeout bounds a whole attempt (measured: the attempt ends within
--timeout + 1 s), --max-size bounds memory (measured in a child process: its peak stays under
2 x --max-size over the same command's peak on a small page), and no body that is not the
whole decoded page is ever recorded `fetched`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fetcher.errors import FetchError
from fetcher.http import get_source
from fetcher.response import parse_retry_after
from fetcher.session import make_session
from fetcher.settings import Settings
from tests.conftest import invoke, run_cli_peak
from tests.hostile import PAGE, HostileServer
from tests.server import FaultServer

TIMEOUT = 1.5
# large enough that a decoder's window (up to 4 MiB for br at the usual settings, 8 MiB for
# zstd, which we cap there) does not dominate what is measured: the body held in memory
MAX_SIZE = 16 * 1024 * 1024

# attempts timed against --timeout, children's peak memory measured: on one worker of the
# suite, never beside another test that measures (CONTRIBUTING.md, "Tests in parallel")
pytestmark = pytest.mark.xdist_group("timing")


@pytest.fixture(scope="module")
def hostile():
    from tests.hostile import bomb, cpu_bomb

    for coding in ("gzip", "deflate", "br", "zstd"):  # made once, now: made by the first
        bomb(coding)  # request for them, they took a loaded machine's CPU for seconds,
    cpu_bomb()  # inside that attempt's --timeout
    with HostileServer() as running:
        yield running


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return replace(settings, timeout=TIMEOUT, retries=0, max_size=MAX_SIZE)


def attempt(url: str, settings: Settings) -> tuple[float, FetchError | bytes]:
    """(seconds taken, the error or the body)."""
    started = time.monotonic()
    try:
        page = get_source(url, settings, make_session(settings), sleep=lambda s: None)
    except FetchError as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, page.body or b""


ENDLESS = [
    "/trickle-headers/",
    "/trickle-chunk-size/",
    "/endless-trailers/",
    "/endless-deflate/",
]


@pytest.mark.parametrize("path", ENDLESS)
def test_an_attempt_ends_at_the_timeout_whatever_the_server_sends(hostile, quick, path) -> None:
    took, outcome = attempt(hostile.url(path), quick)
    assert isinstance(outcome, FetchError) and outcome.transient
    assert f"--timeout {TIMEOUT:g} s" in outcome.message
    assert TIMEOUT - 0.1 < took < TIMEOUT + 1


def test_a_tls_handshake_that_trickles_ends_at_the_timeout(quick) -> None:
    with HostileServer(tls_trickle=True) as server:
        took, outcome = attempt(server.url("/").replace("http:", "https:"), quick)
    assert isinstance(outcome, FetchError) and outcome.transient
    assert took < TIMEOUT + 1


def test_every_retry_gets_its_own_deadline(hostile, quick) -> None:
    took, outcome = attempt(hostile.url("/trickle-headers/"), replace(quick, retries=1))
    assert isinstance(outcome, FetchError) and outcome.attempts == 2
    assert 2 * TIMEOUT - 0.1 < took < 2 * TIMEOUT + 2


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "br", "zstd", "gzip,br"])
def test_every_coding_is_decoded(hostile, quick, coding) -> None:
    assert attempt(hostile.url(f"/encoded/{coding}"), quick)[1] == PAGE


def test_every_coding_is_asked_for(quick) -> None:
    with FaultServer() as server:
        get_source(server.url("/page/a"), quick, make_session(quick))
        sent = server.recorder.headers["/page/a"][0]["Accept-Encoding"]
    assert [c.strip() for c in sent.split(",")] == ["gzip", "deflate", "br", "zstd"]


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_compressed_body_cut_short_fails(hostile, quick, coding) -> None:
    outcome = attempt(hostile.url(f"/truncated/{coding}"), quick)[1]
    assert isinstance(outcome, FetchError) and outcome.transient
    assert "ends before its end marker" in outcome.message


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_bombs_stop_at_max_size(hostile, quick, coding) -> None:
    outcome = attempt(hostile.url(f"/bomb/{coding}"), replace(quick, max_size=2**20))[1]
    assert isinstance(outcome, FetchError) and "larger than --max-size 1048576" in outcome.message


def test_an_unknown_coding_is_a_clear_failure(hostile, quick) -> None:
    outcome = attempt(hostile.url("/unknown-encoding/"), quick)[1]
    assert isinstance(outcome, FetchError) and not outcome.transient
    assert outcome.message == "unsupported Content-Encoding: compress"


@pytest.mark.parametrize("path", ["/redirect-endless/", "/redirect-bomb/"])
def test_redirect_bodies_are_not_read_to_their_end(hostile, quick, path) -> None:
    took, outcome = attempt(hostile.url(path), quick)
    assert outcome == PAGE and took < 1


@pytest.mark.parametrize(
    ("value", "ok"),
    [("5", True), ("5,%205", True), ("%C2%B2", False), ("5,%206", False), ("-5", False),
     ("+5", False), ("0x5", False)],
)  # fmt: skip
def test_content_length_is_read_strictly(hostile, quick, value, ok) -> None:
    outcome = attempt(hostile.url(f"/content-length/{value}"), quick)[1]
    if ok:
        assert outcome == b"hello"
    else:
        assert isinstance(outcome, FetchError) and outcome.transient
        assert "Content-Length" in outcome.message


def test_retry_after_takes_ascii_digits_only() -> None:
    assert parse_retry_after("²") is None and parse_retry_after("٣") is None
    assert parse_retry_after("3") == 3


def test_many_headers_are_accepted(hostile, quick) -> None:
    assert attempt(hostile.url("/many-headers/150"), quick)[1] == PAGE


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/many-headers/2000", "more than 1000 header lines"),
        ("/huge-headers/", "headers longer than 256 KiB"),
    ],
)
def test_header_floods_fail_fast(hostile, quick, path, message) -> None:
    took, outcome = attempt(hostile.url(path), quick)
    assert isinstance(outcome, FetchError) and message in outcome.message and took < 1


def test_a_cookie_set_in_a_chain_reaches_its_next_hop_only(quick) -> None:
    session = make_session(quick)
    with FaultServer() as server:
        chained = get_source(server.url("/set-cookie/"), quick, session)
        alone = get_source(server.url("/echo-cookie/"), quick, session)
    assert chained.body == b"cookie=[chain=1]" and alone.body == b"cookie=[]"


def test_credentials_given_with_h_stay_with_their_site(quick) -> None:
    secret = replace(quick, headers=(("Authorization", "Bearer s3cret"),))
    with FaultServer() as first, FaultServer() as second:  # another port: another origin
        there = second.url("/page/there")
        get_source(
            first.url(f"/set-cookie/?to={first.url('/page/here')}"), secret, make_session(secret)
        )
        get_source(first.url(f"/set-cookie/?to={there}"), secret, make_session(secret))
        assert first.recorder.headers["/page/here"][0]["Authorization"] == "Bearer s3cret"
        assert "Authorization" not in second.recorder.headers["/page/there"][0]


@pytest.mark.parametrize("label", ["hex", "rot13", "base64", "iso-2022-kr"])
def test_a_charset_that_is_no_text_encoding_falls_through(hostile, tmp_path, label) -> None:
    url = hostile.url(f"/charset/{label}")
    result = invoke("--jsonl", "-o", str(tmp_path), "-q", stdin=url + "\n")
    record = json.loads(result.stdout)
    assert record["outcome"] == "fetched" and record["encoding"] == "utf-8"
    assert f"unknown charset '{label}'" in record["note"]
    assert "café" in (tmp_path / record["path"]).read_text("utf-8")


@pytest.mark.parametrize("value", ["1e10", "nan", "inf", "0"])
def test_a_timeout_out_of_range_is_bad_usage(tmp_path, value) -> None:
    result = invoke("--timeout", value, "-o", str(tmp_path), stdin="")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "--timeout" in result.stderr


# --- measured through a child process: wall time and peak memory ----------------------------


def measure(url: str, out: Path) -> tuple[dict[str, object], float, int]:
    """Run fetcher on one URL: its record, the wall time, and its peak RSS in KiB."""
    args = ["--timeout", f"{TIMEOUT:g}", "--retries", "0", "--max-size", str(MAX_SIZE)]
    started = time.monotonic()
    result, peak = run_cli_peak(*args, "--jsonl", "-q", "-o", str(out), stdin=url + "\n")
    return json.loads(result.stdout), time.monotonic() - started, peak


@pytest.fixture(scope="module")
def baseline(hostile, tmp_path_factory) -> int:
    record, _, peak = measure(hostile.url("/page/"), tmp_path_factory.mktemp("baseline"))
    assert record["outcome"] == "fetched"
    return peak


HOSTILE = [
    *ENDLESS,
    "/endless-body/",
    "/redirect-endless/",
    "/redirect-bomb/",
    "/bomb/gzip",
    "/bomb/br",
    "/bomb/zstd",
    "/truncated/gzip",
    "/unknown-encoding/",
    "/huge-headers/",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_time_and_memory_stay_bounded(hostile, baseline, tmp_path, path) -> None:
    record, wall, peak = measure(hostile.url(path), tmp_path)
    assert isinstance(record["elapsed"], float) and record["elapsed"] < TIMEOUT + 1
    assert wall < TIMEOUT + 10  # start-up included
    assert (peak - baseline) * 1024 < 2 * MAX_SIZE, f"peak {peak} KiB vs baseline {baseline} KiB"
    if path.startswith("/redirect-"):
        assert record["outcome"] == "fetched" and record["bytes"] == len(PAGE)
    else:
        assert record["outcome"] == "failed" and record["path"] is None
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and ".fetcher" not in p.parts]


# --- found by trying to break the above --------------------------------------------------------


def test_credentials_follow_the_host_requests_connects_to(quick) -> None:
    """`http://B\\@A/`: urllib.parse reads host A, urllib3 connects to B; B is what counts."""
    secret = replace(quick, headers=(("Authorization", "Bearer s3cret"),))
    with FaultServer() as first, FaultServer() as second:
        tricky = f"http://127.0.0.1:{second.port}%5C@127.0.0.1:{first.port}/page/final"
        with pytest.raises(FetchError, match="HTTP 404"):  # B has no such page; no matter
            get_source(first.url(f"/set-cookie/?to={tricky}"), secret, make_session(secret))
        (seen,) = [h for path, hs in second.recorder.headers.items() for h in hs]
    assert "Authorization" not in seen


@pytest.mark.parametrize("code", ["102", "103"])
def test_informational_answers_before_the_page_are_skipped(hostile, quick, code) -> None:
    assert attempt(hostile.url(f"/early-hints/{code}"), quick)[1] == PAGE


def test_a_101_is_an_error_and_its_connection_is_not_reused(hostile, quick) -> None:
    outcome = attempt(hostile.url("/early-hints/101"), quick)[1]
    assert isinstance(outcome, FetchError) and outcome.status == 101


def test_stacked_codings_are_limited(hostile, quick) -> None:
    assert attempt(hostile.url("/stacked/5"), quick)[1] == PAGE
    outcome = attempt(hostile.url("/stacked/6"), quick)[1]
    assert isinstance(outcome, FetchError) and "6 Content-Encodings stacked" in outcome.message


def test_every_layer_counts_against_max_size(hostile, quick) -> None:
    outcome = attempt(hostile.url("/cpu-bomb/"), replace(quick, max_size=2**20))[1]
    assert isinstance(outcome, FetchError) and "a compressed layer inflates" in outcome.message


def test_decoding_looks_at_the_deadline_between_steps() -> None:
    """Decoding is CPU work, which shutting a socket down cannot stop."""
    from fetcher.codings import Decoder
    from tests.hostile import cpu_bomb

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 10:
            raise TimeoutError

    decoder = Decoder("gzip, gzip, gzip", limit=2**40, check=check)
    with pytest.raises(TimeoutError):
        for _ in decoder.decode(cpu_bomb()):
            pass  # the innermost layer yields nothing: only the check can end this


@pytest.mark.parametrize(
    ("value", "ok"),
    [("chunked", True), ("Chunked", True), ("chunked,", False), ("chunked%20", True),
     ("gzip,%20chunked", False), ("chunked,%20chunked", False), ("identity", False)],
)  # fmt: skip
def test_a_transfer_encoding_http_client_would_not_unframe_is_refused(
    hostile, quick, value, ok
) -> None:
    outcome = attempt(hostile.url(f"/transfer-encoding/{value}"), quick)[1]
    if ok:
        assert outcome == b"hello"
    else:
        assert (
            isinstance(outcome, FetchError) and "unsupported Transfer-Encoding" in outcome.message
        )


def test_a_location_that_is_not_utf8_is_a_clear_failure(hostile, quick) -> None:
    outcome = attempt(hostile.url("/latin1-location/"), quick)[1]
    assert isinstance(outcome, FetchError) and "not valid UTF-8" in outcome.message


def test_text_is_converted_without_holding_it_as_a_str(hostile, baseline, tmp_path) -> None:
    """16 MiB of euro signs in windows-1252 become 48 MiB of UTF-8: memory holds the body and
    that, not also a str of 4 bytes a character."""
    record, _, peak = measure(hostile.url(f"/euro/{MAX_SIZE}"), tmp_path)
    assert record["outcome"] == "fetched" and record["bytes"] == 3 * MAX_SIZE
    assert (peak - baseline) * 1024 < (1 + 3) * MAX_SIZE + 8 * 2**20


@pytest.mark.parametrize("status", ["302", "404"])
def test_a_body_we_throw_away_costs_its_connection_not_the_time(hostile, quick, status) -> None:
    took, outcome = attempt(hostile.url(f"/trailing/{status}"), quick)
    if status == "302":
        assert outcome == PAGE
    else:
        assert isinstance(outcome, FetchError) and outcome.status == 404
    assert took < 1


def test_one_windowed_layer_at_most(hostile, quick) -> None:
    outcome = attempt(hostile.url("/encoded/br,zstd"), quick)[1]
    assert isinstance(outcome, FetchError) and "more than one br or zstd layer" in outcome.message


def test_invalid_bytes_are_counted_not_the_pages_own_replacement_characters() -> None:
    from fetcher.charset import to_utf8

    converted = to_utf8("\ufffd\ufffd ok ".encode() + b"\xff", "text/plain; charset=utf-8")
    assert converted.note == "1 byte sequences invalid in utf-8 replaced with U+FFFD"
    assert converted.data == "\ufffd\ufffd ok \ufffd".encode()
