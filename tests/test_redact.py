"""Credential masking (fetcher.urls), by table: what every record, file name and message
shows of a URL's user:password."""

from __future__ import annotations

import pytest

from fetcher.urls import redact, redact_excerpt, redact_line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://example.com/p?q=1", "http://example.com/p?q=1"),
        ("http://u:pw@example.com/p", "http://***@example.com/p"),
        ("https://u:p#w@example.com/", "https://***@example.com/"),  # a "#" in the password
        ("http://u:pw@[::1/x", "http://***@[::1/x"),  # too malformed to parse: masked anyway
        ("http://h/?next=http://u:p@other/", "http://h/?next=http://***@other/"),
        ("//u:pw@example.com/", "//***@example.com/"),
    ],
)
def test_a_url_shows_no_credentials(url, shown) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("http:\\\\u:pw@h/", "http:\\\\***@h/"),
        ("GET http://u:p#w@h/ HTTP/1.1", "GET http://***@h/ HTTP/1.1"),
        ("<http://u:pw@h>", "<http://***@h>"),
        ("no URL here", "no URL here"),
    ],
)
def test_a_line_that_is_no_url_shows_no_credentials(line, shown) -> None:
    assert redact_line(line) == shown


def test_an_excerpt_clipped_inside_the_authority_is_masked_whole() -> None:
    assert redact_excerpt("see http://user:secre") == "see http://***"
