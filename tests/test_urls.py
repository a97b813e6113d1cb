"""The plain URLs' short way (one regular expression) agrees with the full way (urllib.parse,
urllib3 and requests): it may only take URLs the full way accepts, and must give them the
same canonical form."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fetcher.urls import (
    _canonical_parsed,
    _check_parsed,
    _plain,
    canonical,
    check_url,
    without_dot_segments,
)

# pieces near the edges of the plain kind: empty and long labels, hyphens and underscores at
# either end, dots, ports out of range or with leading zeros, escapes, dot segments, and
# characters that need encoding or end a part
label = st.one_of(
    st.text("abcXYZ019-_", min_size=0, max_size=6),
    st.sampled_from(["a" * 63, "a" * 64, "-a", "a-", "xn--bcher-kva", "ü", "127", "0"]),
)
host = st.lists(label, min_size=1, max_size=4).map(".".join) | st.sampled_from(
    ["127.0.0.1", "[::1]", "a.b.", "a..b", ".a", "u:pw@h", "h@", "*.a", "A.COM.", "a" * 254]
)
port = st.one_of(
    st.just(""), st.sampled_from([":", ":0", ":080", ":80", ":443", ":65535", ":65536", ":99999"])
)
piece = st.one_of(
    st.text("aZ09-._~!$&'()*+,;=:@/?", max_size=8),
    st.sampled_from([".", "..", "%41", "%zz", "%", "\\", " ", '"', "<", "é", "#", "[", "^"]),
)
text = st.lists(piece, max_size=5).map("".join)
urls = st.builds(
    lambda scheme, h, p, path, query, fragment: f"{scheme}://{h}{p}{path}{query}{fragment}",
    st.sampled_from(["http", "https", "HTTP", "hTtPs", "ftp"]),
    host,
    port,
    st.one_of(st.just(""), text.map(lambda t: "/" + t)),
    st.one_of(st.just(""), text.map(lambda t: "?" + t)),
    st.one_of(st.just(""), text.map(lambda t: "#" + t)),
)


def refused(url: str, check: Callable[[str], None] = _check_parsed) -> bool:
    try:
        check(url)
    except ValueError:
        return True
    return False


@settings(max_examples=3000, deadline=None)
@given(urls)
@example("HTTP://Example.COM:80/./a/../b/?#top")
@example("http://a.b./p?")
@example("http://a:0/")
@example("http://a:080/x")
@example("http://a_b-c.d/x?y=1&z=@/?")
@example("https://x.org")
def test_the_short_way_agrees_with_the_full_way(url: str) -> None:
    if _plain(url) is not None:
        assert not refused(url)
        assert canonical(url) == _canonical_parsed(url)
    assert refused(url, check_url) == refused(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/p/1.html",
        "https://www.example.com/a/b.html?q=1&r=two#frag",
        "HTTP://Example.com:80/./p/9.html?#top",
    ],
)
def test_urls_of_everyday_lists_take_the_short_way(url: str) -> None:
    assert _plain(url) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://u:pw@example.com/",  # user info: masked, never in the canonical form
        "http://example.com/%7Ealice",  # escapes are normalised the full way
        "http://bücher.de/",  # IDN
        "http://[::1]/",
        "http://a..b/",  # refused, with the full way's reason
        "http://example.com:65536/",
        "http://example.com/a b",
    ],
)
def test_other_urls_take_the_full_way(url: str) -> None:
    assert _plain(url) is None


@pytest.mark.parametrize(
    ("prepared", "sent"),
    [
        ("http://h/../x", "http://h/x"),
        ("http://h:8/a/./b/../c?q=/../", "http://h:8/a/c?q=/../"),
        ("http://h/a/..", "http://h/"),
        ("http://h/.../x#f/../", "http://h/.../x#f/../"),
        ("http://h", "http://h"),
    ],
)
def test_the_request_has_the_path_of_the_urls_identity(prepared: str, sent: str) -> None:
    assert without_dot_segments(prepared) == sent


def test_spellings_of_one_url_are_one_request_under_no_dedupe(tmp_path) -> None:
    """`/%2e%2e/x`, `/../x` and `/x` are one URL (one file); each is sent as `/x`, so the
    file holds what every record of it says (WHATWG: `%2e` is a dot in a path)."""
    import json

    from tests.conftest import run_cli
    from tests.rawserver import raw_server

    with raw_server() as server:
        server.answers["/x"] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
        server.answers["/../x"] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nOTHER"
        urls = [server.url(p) for p in ("/%2e%2e/x", "/../x", "/x", "/.%2E/x", "/a/%2E%2e/x")]
        result = run_cli("--no-dedupe", "--jsonl", "-o", str(tmp_path), stdin="\n".join(urls))
        assert server.paths() == ["/x"] * len(urls)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["path"] for r in records} == {records[0]["path"]}
    assert {r["sha256"] for r in records} == {records[0]["sha256"]}
    assert (tmp_path / records[0]["path"]).read_bytes() == b"x"
