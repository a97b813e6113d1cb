"""--robots: robots.txt fetched once per host and obeyed (RFC 9309), Crawl-delay honoured,
measured at a local server; and never asked for without --robots."""

from __future__ import annotations

import itertools
import json

import pytest

from fetcher._version import __version__
from fetcher.errors import ExitCode
from fetcher.robots import origin_of
from tests.conftest import invoke, run_cli

RULES = """\
User-agent: otherbot
Disallow: /

User-agent: fetcher
Disallow: /page/private
Allow: /page/private-but-open
Disallow: /page/*.pdf$
Disallow: /page/tie
Allow: /page/tie
"""
EXPECTED = {
    "/page/public": "fetched",
    "/page/private": "disallowed",
    "/page/private-area": "disallowed",  # a prefix
    "/page/private-but-open": "fetched",  # the longest match wins
    "/page/paper.pdf": "disallowed",  # * and $
    "/page/paper.pdf?v=2": "fetched",  # $ ends the path: a query follows
    "/page/tie": "fetched",  # Allow wins a tie
}


def run(server, tmp_path, paths, *options: str, cli=invoke):
    urls = "\n".join(server.url(path) for path in paths)
    result = cli("-o", str(tmp_path / "out"), "--jsonl", "--retries", "0", *options, stdin=urls)
    records = {
        r["url"].partition(str(server.port))[2]: r
        for r in map(json.loads, result.stdout.splitlines())
    }
    return result, records


def robots_requests(server) -> int:
    return server.recorder.counts["/robots.txt"]


def test_rules_are_obeyed_for_the_user_agent_sent(server, tmp_path) -> None:
    server.robots = (200, RULES)
    result, records = run(server, tmp_path, EXPECTED, "--robots")
    assert {path: r["outcome"] for path, r in records.items()} == EXPECTED
    assert result.returncode == ExitCode.OK, result.stderr
    for path, outcome in EXPECTED.items():
        assert server.recorder.counts[path] == (outcome == "fetched"), path
        if outcome == "disallowed":
            record = records[path]
            assert record["note"].endswith(f"/robots.txt for User-Agent 'fetcher/{__version__}'")
            assert record["error"] is None and record["status"] is None
    assert robots_requests(server) == 1  # once per run
    assert "3 disallowed" in result.stderr


def test_another_user_agent_gets_the_star_group(server, tmp_path) -> None:
    server.robots = (200, "User-agent: *\nDisallow: /page/b\n\nUser-agent: fetcher\nAllow: /\n")
    _, records = run(server, tmp_path, ["/page/a", "/page/b"], "--robots", "-A", "otherbot/2")
    assert [records[p]["outcome"] for p in ("/page/a", "/page/b")] == ["fetched", "disallowed"]


def test_without_robots_robots_txt_is_never_asked_for(server, tmp_path) -> None:
    server.robots = (200, "User-agent: *\nDisallow: /\n")
    result, records = run(server, tmp_path, ["/page/a", "/page/b"])
    assert {r["outcome"] for r in records.values()} == {"fetched"} and result.returncode == 0
    assert robots_requests(server) == 0


def test_a_404_robots_txt_allows_everything(server, tmp_path) -> None:
    server.robots = (404, "")
    result, records = run(server, tmp_path, ["/page/a", "/page/b"], "--robots")
    assert {r["outcome"] for r in records.values()} == {"fetched"} and result.returncode == 0
    assert robots_requests(server) == 1


@pytest.mark.parametrize("code", [503, 500])
def test_a_5xx_robots_txt_disallows_the_host_for_the_run(server, tmp_path, code) -> None:
    server.robots = (code, "")
    result, records = run(server, tmp_path, ["/page/a", "/page/b"], "--robots")
    assert {r["outcome"] for r in records.values()} == {"disallowed"}
    assert result.returncode == ExitCode.OK  # not a failure of the run
    assert all(f"HTTP {code}" in r["note"] for r in records.values())
    assert server.recorder.counts["/page/a"] == 0 and robots_requests(server) == 1


def test_an_unreachable_host_is_disallowed(tmp_path) -> None:
    from tests.server import free_port_refusing

    url = f"http://127.0.0.1:{free_port_refusing()}/a"
    result = invoke("--robots", "--jsonl", "--retries", "0", "-o", str(tmp_path / "o"), url)
    (record,) = map(json.loads, result.stdout.splitlines())
    assert record["outcome"] == "disallowed" and result.returncode == 0
    assert "robots.txt could not be fetched" in record["note"]


def test_robots_txt_redirects_are_followed(server, tmp_path) -> None:
    server.robots = (301, server.url("/file/rules"))
    server.files["rules"] = "User-agent: *\nDisallow: /page/b\n"
    _, records = run(server, tmp_path, ["/page/a", "/page/b"], "--robots")
    assert [records[p]["outcome"] for p in ("/page/a", "/page/b")] == ["fetched", "disallowed"]


POOLS = [["--threads", "4"], ["--processes", "2", "--threads", "2"]]


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
@pytest.mark.parametrize("pool", POOLS)
def test_crawl_delay_spaces_the_hosts_requests(server, tmp_path, pool) -> None:
    server.robots = (200, "User-agent: *\nCrawl-delay: 1\nDisallow: /page/x\n")
    paths = [f"/page/c{i}" for i in range(3)]
    cli = run_cli if "--processes" in pool else invoke
    result, records = run(server, tmp_path, paths, "--robots", *pool, cli=cli)
    assert {r["outcome"] for r in records.values()} == {"fetched"}, result.stderr
    starts = sorted((start, path) for path, start, _ in server.recorder.spans)
    # every start at least 1 s after the one before, but two workers' first robots.txt
    # requests, both asked before either had read a Crawl-delay
    gaps = [(b - a, p, q) for (a, p), (b, q) in itertools.pairwise(starts)]
    assert all(gap >= 1.0 for gap, p, q in gaps if (p, q) != ("/robots.txt",) * 2), gaps
    assert 1 <= robots_requests(server) <= 2  # once per worker process at most


def test_robots_is_refused_with_dask(tmp_path) -> None:
    result = invoke("--robots", "--dask", "local", "-o", str(tmp_path / "o"), stdin="")
    assert (
        result.returncode == ExitCode.USAGE
        and "--robots does not work with --dask" in result.stderr
    )


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://u:p@Example.COM:80/a?b", "http://example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("https://example.com:8443/x", "https://example.com:8443"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("ftp://example.com/", None),
        ("http:///nohost", None),
    ],
)
def test_origin_of(url, origin) -> None:
    assert origin_of(url) == origin
