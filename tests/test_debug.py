"""--debug: each request's and response's head on standard error, credentials masked, from
the fetch path in every process that fetches (threads, worker processes, Dask workers)."""

from __future__ import annotations

import pytest

from fetcher.errors import ExitCode
from fetcher.trace import masked
from tests.conftest import invoke, run_cli

SECRETS = ("s3cret", "hunter2", "chain=1", "tok=abc")


def chain_url(server) -> str:
    """A redirect that sets a cookie and goes to a URL with user:password in it."""
    target = server.url("/echo-cookie/").replace("http://", "http://alice:hunter2@")
    return server.url(f"/set-cookie?to={target}")


def check_heads(stderr: str, server) -> None:
    port = server.url("/").split(":")[2].rstrip("/")
    assert f"> GET http://127.0.0.1:{port}/set-cookie?to=http://***@127.0.0.1" in stderr
    assert "> Authorization: Bearer ***" in stderr  # -H
    assert "> Cookie: tok=***" in stderr  # -H
    assert "< HTTP/1.1 302 Found" in stderr and "< Set-Cookie: chain=***; Path=/" in stderr
    assert f"< Location: http://***@127.0.0.1:{port}/echo-cookie/" in stderr
    assert f"> GET http://***@127.0.0.1:{port}/echo-cookie/" in stderr
    assert "> Authorization: Basic ***" in stderr  # from the URL's user:password
    assert "< HTTP/1.1 200 OK" in stderr and "< Content-Type: text/plain" in stderr
    assert "fetcher: fetched: " in stderr  # --debug implies -v
    for secret in SECRETS:
        assert secret not in stderr, secret


ARGS = ("-H", "Authorization: Bearer s3cret", "-H", "Cookie: tok=abc", "--debug")


def test_debug_in_the_runs_own_threads(server, tmp_path) -> None:
    result = invoke(chain_url(server), *ARGS, "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    check_heads(result.stderr, server)
    assert result.stdout == ""  # people's text, never on standard output


def test_debug_in_worker_processes(server, tmp_path) -> None:
    result = run_cli(chain_url(server), *ARGS, "-p", "2", "-t", "1", "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    check_heads(result.stderr, server)


def test_debug_on_a_local_dask_cluster(server, tmp_path) -> None:
    """A local cluster's workers share fetcher's standard error; a remote one's write their
    own (their logs)."""
    pytest.importorskip("distributed")
    result = run_cli(chain_url(server), *ARGS, "--dask", "local", "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    check_heads(result.stderr, server)


def test_no_debug_no_heads(server, tmp_path) -> None:
    result = invoke(server.url("/page/a"), "-v", "-o", str(tmp_path / "o"))
    assert "> GET" not in result.stderr and "< HTTP" not in result.stderr


def test_quiet_and_debug_together_are_bad_usage() -> None:
    result = invoke("-q", "--debug", "http://127.0.0.1:9/")
    assert result.returncode == ExitCode.USAGE and "either -q or --debug" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("Authorization", "Basic YWxpY2U6aHVudGVyMg==", "Basic ***"),
        ("proxy-authorization", "token", "***"),
        ("Cookie", "a=1; b=2", "a=***; b=***"),
        ("Set-Cookie", "sid=xyz; Path=/; HttpOnly", "sid=***; Path=/; HttpOnly"),
        ("Location", "https://u:p@example.com/x", "https://***@example.com/x"),
        ("Server", "evil\x1b[2J", "evil\\x1b[2J"),
        ("Content-Type", "text/html", "text/html"),
    ],
)
def test_masked(name, value, shown) -> None:
    assert masked(name, value) == shown
