from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from fetcher.errors import FetchError, TooLarge
from fetcher.http import get_source
from fetcher.response import parse_retry_after
from fetcher.session import make_session
from fetcher.settings import Settings
from tests.server import FaultServer, free_port_refusing


def fetch(server: FaultServer, path: str, settings: Settings, sleeps: list[float] | None = None):
    waits = sleeps if sleeps is not None else []
    return get_source(server.url(path), settings, make_session(settings), sleep=waits.append)


def failure(server: FaultServer, path: str, settings: Settings) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(server, path, settings)
    return caught.value


@pytest.mark.parametrize("code", [400, 403, 404, 410, 451])
def test_permanent_statuses_fail_at_once(server, settings, code) -> None:
    error = failure(server, f"/status/{code}", settings)
    assert (error.status, error.attempts, error.transient) == (code, 1, False)
    assert error.message.startswith(f"HTTP {code}")
    assert server.recorder.counts[f"/status/{code}"] == 1


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_then_fail(server, settings, code) -> None:
    error = failure(server, f"/status/{code}", replace(settings, retries=2))
    assert (error.status, error.attempts) == (code, 3)
    assert server.recorder.counts[f"/status/{code}"] == 3


def test_transient_then_success(server, settings) -> None:
    page = fetch(server, "/flaky/2/503/k", settings)
    assert (page.status, page.attempts) == (200, 3)
    assert page.body and b"<h1>k</h1>" in page.body


def test_no_retries_means_one_attempt(server, settings) -> None:
    assert failure(server, "/status/503", replace(settings, retries=0)).attempts == 1


@pytest.mark.parametrize("value", ["2", "date+2"])
def test_retry_after_is_honoured(server, settings, value) -> None:
    sleeps: list[float] = []
    with pytest.raises(FetchError):
        fetch(server, f"/retry-after/{value}/429", replace(settings, retries=1), sleeps)
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 2.0


def test_retry_after_over_the_cap_fails_now(server, settings) -> None:
    error = failure(server, "/retry-after/3600/503", settings)
    assert error.attempts == 1 and "retry after 3600 s" in error.message


def test_backoff_grows_with_jitter(server, settings) -> None:
    sleeps: list[float] = []
    with pytest.raises(FetchError):
        fetch(server, "/status/500", replace(settings, retries=3, backoff=0.5), sleeps)
    assert len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 1.5 and 2.0 <= sleeps[2] <= 2.5


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize("path", ["/truncated", "/bad-chunked", "/reset"])
def test_broken_bodies_are_transient(server, settings, path) -> None:
    error = failure(server, path, replace(settings, retries=1))
    assert error.transient and error.attempts == 2
    assert server.recorder.counts[path] == 2


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
def test_trickle_ends_at_the_total_timeout(server, settings) -> None:
    started = time.monotonic()
    error = failure(server, "/trickle", replace(settings, timeout=1.5, retries=0))
    assert time.monotonic() - started < 3.5
    assert "--timeout 1.5 s" in error.message


def test_slow_answer_times_out(server, settings) -> None:
    error = failure(server, "/slow/3", replace(settings, timeout=0.5, retries=0))
    assert "did not answer within --timeout 0.5 s" in error.message and error.transient


def test_refused(settings) -> None:
    url = f"http://127.0.0.1:{free_port_refusing()}/"
    with pytest.raises(FetchError, match="connection refused") as caught:
        get_source(url, replace(settings, retries=1), make_session(settings), sleep=lambda s: None)
    assert caught.value.attempts == 2


def test_name_not_resolved(settings) -> None:
    # .invalid never resolves (RFC 6761), and the resolver answers without the network
    with pytest.raises(FetchError, match="name not resolved"):
        get_source(
            "http://no-such-host.invalid/", replace(settings, retries=0), make_session(settings)
        )


def test_gzip_bomb_is_stopped_while_streaming(server, settings) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TooLarge, match="larger than --max-size 1048576"):
        fetch(server, "/gzip-bomb", replace(settings, max_size=1024 * 1024))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50  # the bomb inflates to 200 MiB


def test_corrupt_gzip_fails(server, settings) -> None:
    error = failure(server, "/bad-gzip", settings)
    assert "Content-Encoding" in error.message and not error.transient


def test_content_length_over_max_fails_before_the_body(server, settings) -> None:
    error = failure(server, "/big/5000", replace(settings, max_size=1000))
    assert "Content-Length is 5000 bytes" in error.message and error.attempts == 1


def test_max_size_is_inclusive(server, settings) -> None:
    assert len(fetch(server, "/big/1000", replace(settings, max_size=1000)).body or b"") == 1000


def test_redirect_chain_within_the_limit(server, settings) -> None:
    page = fetch(server, "/redirect/5", settings)
    assert page.final_url == server.url("/page/redirected")


def test_redirect_chain_over_the_limit(server, settings) -> None:
    error = failure(server, "/redirect/5", replace(settings, max_redirects=3))
    assert "more than 3 redirects" in error.message


def test_redirect_loop(server, settings) -> None:
    assert "redirect loop" in failure(server, "/loop", settings).message


def test_redirect_to_another_scheme(server, settings) -> None:
    error = failure(server, "/redirect-to?url=ftp://127.0.0.1/file", settings)
    assert "redirected to a URL that cannot be fetched" in error.message


def test_not_http(server, settings) -> None:
    error = failure(server, "/not-http", replace(settings, retries=0))
    assert "not HTTP" in error.message


def test_headers_and_user_agent_are_sent(server, settings) -> None:
    custom = replace(settings, headers=(("X-Token", "abc"),), user_agent="probe/1")
    fetch(server, "/page/h", custom)
    seen = server.recorder.headers["/page/h"][0]
    assert seen["X-Token"] == "abc" and seen["User-Agent"] == "probe/1"


def test_default_user_agent(server, settings) -> None:
    from fetcher import __version__

    fetch(server, "/page/ua", settings)
    assert server.recorder.headers["/page/ua"][0]["User-Agent"] == f"fetcher/{__version__}"


def test_fetch_error_pickles() -> None:
    import pickle

    error = FetchError("x", transient=True, status=503, retry_after=2.0)
    error.attempts = 4
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.transient, copy.status, copy.retry_after, copy.attempts) == (
        "x",
        True,
        503,
        2.0,
        4,
    )


@pytest.mark.parametrize("path", ["/truncated", "/bad-chunked", "/reset", "/gzip-bomb"])
def test_a_broken_body_is_never_saved(server, settings, path) -> None:
    from fetcher.pools.threads import run_task
    from fetcher.task import Task

    url = server.url(path)
    record = run_task(Task(1, url, url), replace(settings, retries=0, max_size=2**20))
    assert record.outcome == "failed" and record.path is None
    assert not settings.out.exists() or not [p for p in settings.out.rglob("*") if p.is_file()]


def test_proxy_from_the_environment_is_honoured(server, settings, monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", server.url(""))
    target = f"http://127.0.0.1:{free_port_refusing()}/page/proxied"  # only the proxy answers
    page = get_source(target, settings, make_session(settings))
    assert page.status == 200 and server.recorder.counts[target] == 1


def test_no_proxy_is_matched_against_the_host_as_sent(server, settings, monkeypatch) -> None:
    """As requests does: an IDN host is matched in punycode, the form it is sent in."""
    import socket

    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # the IDN name is this machine (no DNS asked)
        return real("127.0.0.1" if host == "xn--bcher-kva.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setenv("http_proxy", server.url(""))  # it would answer: it must not be asked
    monkeypatch.setenv("no_proxy", "xn--bcher-kva.test")
    target = f"http://bücher.test:{free_port_refusing()}/page/direct"
    with pytest.raises(FetchError, match="refused"):
        get_source(target, replace(settings, retries=0), make_session(settings))
    assert not any("page/direct" in url for url in server.recorder.counts)


def test_ca_bundle_from_the_environment(tls_server, settings, monkeypatch) -> None:
    server, bundle = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = make_session(settings)
    assert session.trust_env is False  # nothing else to honour: requests skips the lookups
    assert get_source(server.url("/page/a"), settings, session).status == 200
