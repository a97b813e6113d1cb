from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetcher.errors import UsageError
from fetcher.inputs import _entries, _lines, parse_line, read_entries, unique, url_entries


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("http://example.com/", "http://example.com/"),
        ("  https://example.com/a?b=c#d \n", "https://example.com/a?b=c#d"),
        ("HTTP://EXAMPLE.COM/", "HTTP://EXAMPLE.COM/"),
        ("http://bücher.de/straße", "http://bücher.de/straße"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://user:pw@example.com/", "http://user:pw@example.com/"),
        ("http://example.com/a b", "http://example.com/a b"),
        ("", None),
        ("   \t ", None),
        ("# a comment", None),
        ("   # indented comment", None),
    ],
)
def test_parse_line_accepts(line: str, expected: str | None) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("ftp://example.com/file", "unsupported scheme 'ftp'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("mailto:a@b.c", "unsupported scheme 'mailto'"),
        ("example.com/page", "needs http:// or https://"),
        ("http://", "no host"),
        ("http:///path", "no host"),
        ("http://exa mple.com/", "invalid host name"),
        ("http://a..b/", "invalid host name"),
        ("http://-bad-.com/", "invalid host name"),
        ("http://example.com:99999/", "malformed URL"),
        ("http://[::1/", "malformed URL"),
        ("http://[zz::1]/", "IPv6"),
        ("http://example.com/\x00x", "control characters"),
        ("http://example.com/\tx", "control characters"),
        ("http://example.com/" + "a" * 10_000, "characters long"),
    ],
)
def test_parse_line_rejects(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


def test_entries_name_file_and_line_and_keep_going() -> None:
    lines = [
        b"http://a.example/\n",
        b"# c\n",
        b"ftp://x/\n",
        b"\n",
        b"\xff\xfe\n",
        b"http://b.example/\n",
    ]
    batches = list(_entries("urls.txt line", [lines[:2], [], lines[2:5], lines[5:]]))
    assert [len(batch) for batch in batches] == [1, 2, 1]  # a batch of nothing is left out
    entries = [entry for batch in batches for entry in batch]
    assert [(e.url, e.where, e.error is None) for e in entries] == [
        ("http://a.example/", "urls.txt line 1", True),
        ("ftp://x/", "urls.txt line 3", False),
        ("\ufffd\ufffd", "urls.txt line 5", False),
        ("http://b.example/", "urls.txt line 6", True),
    ]
    assert entries[2].error == "line is not valid UTF-8"


def test_dedupe_keeps_first_and_every_bad_line() -> None:
    entries = list(
        url_entries(["http://a.example/", "bad", "http://a.example/", "bad", "http://a.example/x"])
    )
    assert [e.url for e in entries] == ["http://a.example/", "bad", "bad", "http://a.example/x"]
    assert [e.url for e in url_entries(["http://a.example/"] * 3, dedupe=False)] == [
        "http://a.example/"
    ] * 3
    assert list(unique([])) == []


def test_several_files_in_order(tmp_path: Path) -> None:
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("http://a.example/\nhttp://b.example/\n")
    two.write_text("http://b.example/\nhttp://c.example/")  # no final newline
    urls = [e.url for e in read_entries([str(one), str(two)])]
    assert urls == ["http://a.example/", "http://b.example/", "http://c.example/"]


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read URL file .*nope\.txt"):
        list(read_entries([str(tmp_path / "nope.txt")]))


def test_lines_arrive_before_the_stream_ends() -> None:
    """The lines a read completes come out before the next read (which may wait on a pipe)."""

    class OneRead(io.RawIOBase):
        reads = 0

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            assert self.reads == 1, "read again before the lines it had were handed over"
            return b"http://a.example/\nhttp://b.example/\nhttp://c.ex"

    lines = _lines(OneRead())  # type: ignore[arg-type]
    assert next(lines) == [b"http://a.example/\n", b"http://b.example/\n"]


def test_stdin_is_read_as_it_arrives() -> None:
    """A slow producer: the first entry is available long before the producer finishes."""
    code = (
        "import sys, time\nfrom fetcher.inputs import read_entries\n"
        "for e in read_entries(['-']):\n    print(e.url, flush=True)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as reader:
        assert reader.stdin and reader.stdout
        reader.stdin.write("http://first.example/\n")
        reader.stdin.flush()
        started = time.monotonic()
        assert reader.stdout.readline().strip() == "http://first.example/"
        assert time.monotonic() - started < 5
        reader.stdin.write("http://second.example/\n")
        reader.stdin.close()
        assert reader.stdout.readline().strip() == "http://second.example/"
