from __future__ import annotations

import pytest

from fetcher.charset import codec_for, decode, is_text, split_content_type
from fetcher.pools.threads import run_task
from fetcher.prescan import prescan
from fetcher.task import Task
from tests.server import CHARSET_PAGES, PNG, FaultServer


@pytest.mark.parametrize("name", sorted(CHARSET_PAGES))
def test_decoding_order(name: str) -> None:
    content_type, body, expected = CHARSET_PAGES[name]
    assert expected in decode(body, content_type).text


@pytest.mark.parametrize(
    ("name", "encoding", "note"),
    [
        ("gbk-meta", "gb18030", None),
        ("sjis-http-equiv", "cp932", None),
        ("cp1251-header", "cp1251", None),
        ("utf8-undeclared", "utf-8", None),
        ("utf8-bom", "utf-8", None),
        ("utf16-bom", "utf-16-le", None),
        ("xml-decl", "cp1251", None),
        ("header-beats-meta", "utf-8", None),
        ("unknown-declared", "utf-8", "unknown charset 'x-no-such' declared in the document"),
        ("invalid-bytes", "utf-8", "2 byte sequences invalid in utf-8 replaced with U+FFFD"),
        ("latin1-header", "cp1252", None),
    ],
)
def test_encoding_and_notes(name: str, encoding: str, note: str | None) -> None:
    content_type, body, _ = CHARSET_PAGES[name]
    decoded = decode(body, content_type)
    assert (decoded.encoding, decoded.note) == (encoding, note)


def test_unknown_header_charset_falls_through() -> None:
    decoded = decode('<meta charset="koi8-r"><p>тест</p>'.encode("koi8-r"), "text/html; charset=zz")
    assert "тест" in decoded.text and decoded.encoding == "koi8-r"
    assert decoded.note == "unknown charset 'zz' in Content-Type"


def test_bom_is_not_kept() -> None:
    assert not decode(b"\xef\xbb\xbfhi", "text/plain").text.startswith("\ufeff")


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/html; charset=utf-8", b"", True),
        ("application/json", b"{}", True),
        ("application/rss+xml", b"<rss/>", True),
        ("application/vnd.api+json", b"{}", True),
        ("image/png", PNG, False),
        ("application/octet-stream", b"<html>", False),
        ("application/pdf", b"%PDF", False),
        (None, b"  <!doctype html>", True),
        (None, PNG, False),
    ],
)
def test_is_text(content_type: str | None, body: bytes, text: bool) -> None:
    assert is_text(content_type, body) is text


def test_labels() -> None:
    assert codec_for("GB2312") == "gb18030" and codec_for("ISO-8859-1") == "cp1252"
    assert codec_for("nonsense") is None and codec_for(None) is None
    assert split_content_type('text/html; charset="UTF-8"') == ("text/html", "UTF-8")
    assert split_content_type("text/html; charset*=UTF-8''shift_jis") == ("text/html", "shift_jis")


def saved(url: str, settings):
    return run_task(Task(1, url, url), settings)


@pytest.mark.parametrize("name", sorted(CHARSET_PAGES))
def test_saved_as_utf8(server: FaultServer, settings, name: str) -> None:
    record = saved(server.url(f"/charset/{name}"), settings)
    assert record.outcome == "fetched", record.error
    text = (settings.out / record.path).read_bytes().decode("utf-8")
    assert CHARSET_PAGES[name][2] in text  # strict: raises if not UTF-8


def test_binary_saved_byte_for_byte(server: FaultServer, settings) -> None:
    record = saved(server.url("/binary"), settings)
    assert (settings.out / record.path).read_bytes() == PNG
    assert record.encoding is None and record.content_type == "image/png"


def test_raw_keeps_the_original_bytes(server: FaultServer, settings) -> None:
    from dataclasses import replace

    record = saved(server.url("/charset/gbk-meta"), replace(settings, raw=True))
    assert (settings.out / record.path).read_bytes() == CHARSET_PAGES["gbk-meta"][1]
    assert record.encoding is None


def test_a_guessed_charset_is_owned_up_to_in_the_record(server: FaultServer, settings) -> None:
    record = saved(server.url("/charset/cp1251-undeclared"), settings)
    assert record.encoding == "cp1251"
    assert record.note == "charset guessed: windows-1251 (none declared)"
    assert record.to_dict()["note"] == record.note  # what --jsonl and the index write


# The HTML Standard's prescan (fetcher/prescan.py): what declares, and what does not.
PRESCANNED = {
    b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">': "koi8-r",
    b"<META CHARSET='KOI8-R'>": "koi8-r",
    b'<a title="<meta charset=windows-1251>"><meta charset="koi8-r">': "koi8-r",
    b"<meta charset=bogus><meta charset=koi8-r>": "koi8-r",
    b"<!-- <meta charset=windows-1251> --><meta charset=koi8-r>": "koi8-r",
    b'<meta content="charset=windows-1251" name=x><meta charset=koi8-r>': "koi8-r",
    b'<meta content="text/html; charset=koi8-r" http-equiv=content-type>': "koi8-r",
}


@pytest.mark.parametrize("head", sorted(PRESCANNED))
def test_the_prescan_finds_the_declaring_meta(head) -> None:
    label, _ = prescan(head, codec_for)
    assert label is not None and label.lower() == PRESCANNED[head]
