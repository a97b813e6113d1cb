"""Attacks on charset handling (fetcher.charset) that break a promise of the contract or
docs/fidelity.md. Each test fails on the branch point it was written against."""

from __future__ import annotations

import pytest

from fetcher.charset import decode

GRUSSE = "<p>Grüße, Привет</p>"

# The contract: text is decoded with "the document's own declaration (`<meta charset>`,
# `<?xml encoding?>`), else detection"; what-happens.md: "declares an unknown charset ... says
# so in `note`". None of these pages declares a charset (the WHATWG prescan skips comments, and
# takes `content` only with http-equiv="Content-Type"), and each is valid UTF-8, so each is
# UTF-8. fetcher's regex finds "charset=koi8-r" in them and decodes the page as KOI8-R, with
# no note at all: silent mojibake.
NOT_DECLARATIONS = {
    "description": '<meta name="description" content="How to set charset=koi8-r in Apache">',
    "og": '<meta property="og:title" content="charset=koi8-r explained">',
    "commented out": '<!-- <meta charset="koi8-r"> -->',
    "content without http-equiv": '<meta name="x" content="text/html; charset=koi8-r">',
}


@pytest.mark.parametrize("head", sorted(NOT_DECLARATIONS))
def test_a_meta_that_declares_no_charset_is_not_a_declaration(head) -> None:
    decoded = decode((NOT_DECLARATIONS[head] + GRUSSE).encode(), "text/html")
    assert (decoded.encoding, decoded.note) == ("utf-8", None)
    assert GRUSSE in decoded.text


# codec_for: "The Python codec for a charset label as browsers read it (the WHATWG Encoding
# Standard's label table)". WHATWG windows-1252 (also what `iso-8859-1`, `latin1` and `ascii`
# mean on the web) maps every byte; Python's cp1252 has no mapping for 0x81, 0x8D, 0x8F, 0x90
# and 0x9D, so those bytes are lost as U+FFFD although the page declares its charset correctly.
@pytest.mark.parametrize("label", ["windows-1252", "iso-8859-1", "us-ascii"])
def test_windows_1252_decodes_every_byte_as_browsers_do(label) -> None:
    decoded = decode(b"caf\xe9 \x81\x8d\x8f\x90\x9d", f"text/plain; charset={label}")
    assert decoded.text == "café \x81\x8d\x8f\x90\x9d" and decoded.note is None


# Same for EUC-JP: WHATWG's jis0208 index has the NEC row 13 (circled digits, Roman numerals,
# ㈱), common on Japanese pages; Python's euc_jp has not.
def test_euc_jp_decodes_the_nec_row_as_browsers_do() -> None:
    decoded = decode(b"\xad\xa1\xad\xa2\xad\xb5", "text/plain; charset=euc-jp")
    assert decoded.text == "①②Ⅰ" and decoded.note is None


# "Is text lost?" A long UTF-8 page with one stray byte at its end is guessed windows-1252
# (chardetng, as documented), and then every UTF-8 sequence holding 0x81, 0x8D, 0x8F, 0x90 or
# 0x9D (U+0420, U+0441, the curly quotes, ...) loses a byte to U+FFFD: 2000 replacements for
# this page, and the mojibake can no longer be undone. Decoded as windows-1252 is (every byte
# maps), nothing would be lost.
def test_a_guessed_windows_1252_page_loses_no_bytes() -> None:
    body = ("<p>Привет мир, “quotes”</p>\n" * 2000).encode() + b"\xff"
    decoded = decode(body, "text/html")
    assert decoded.note is not None and "charset guessed" in decoded.note
    assert "\ufffd" not in decoded.text, decoded.note


# fidelity.md: "A body that declares none is UTF-8 if it is valid UTF-8 (and not 7-bit
# ISO-2022-JP)". charset.py asks only whether an ESC byte is in the body, not whether it is
# 7-bit: a UTF-8 log with ANSI colours (CI output served as text/plain) is valid UTF-8 and not
# 7-bit, yet it is guessed — windows-1252 under .com (mojibake), Shift_JIS under .jp (mojibake
# and bytes lost to U+FFFD).
@pytest.mark.parametrize("url", ["http://ci.example.com/log", "http://ci.example.jp/log"])
def test_valid_utf8_with_an_escape_byte_is_utf8(url) -> None:
    text = "\x1b[1m日本語 café\x1b[0m build failed\n" * 20
    decoded = decode(text.encode(), "text/plain", url)
    assert (decoded.encoding, decoded.note) == ("utf-8", None)
    assert decoded.text == text


# The WHATWG prescan (which codec_for says it follows for labels): "If charset is
# x-user-defined, then set charset to windows-1252" (a <meta> cannot pick x-user-defined, as
# it cannot pick UTF-16). fetcher decodes é as U+F7E9, a private-use character, with no note.
def test_a_meta_declaring_x_user_defined_is_read_as_windows_1252() -> None:
    decoded = decode('<meta charset="x-user-defined"><p>café</p>'.encode("cp1252"), "text/html")
    assert "café" in decoded.text and decoded.encoding == "cp1252"
