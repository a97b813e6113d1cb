"""Which bodies are text, and how to turn their bytes into str, in the contract's order."""

from __future__ import annotations

import codecs
import encodings.cp1252
import functools
import io
import re
import threading
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any
from urllib.parse import urlsplit

import webencodings

from fetcher.prescan import prescan

_TEXT_APPLICATION = {
    "json", "xml", "xhtml+xml", "javascript", "ecmascript", "x-javascript", "rss+xml",
    "atom+xml", "ld+json", "manifest+json", "x-www-form-urlencoded", "sql", "x-sh",
    "x-httpd-php", "yaml", "x-yaml", "toml", "csv",
}  # fmt: skip
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, which is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# WHATWG's GBK decoder is its gb18030 decoder; Python's gbk codec rejects bytes pages use.
# (webencodings already maps Shift_JIS, Big5 and EUC-KR onto their Windows supersets.)
_DECODERS = {"gbk": "gb18030"}
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]+?encoding\s*=\s*[\"']([a-z0-9_.:-]+)[\"']", re.IGNORECASE)
PRESCAN_BYTES = 4096  # browsers look at the first 1024; pages with long <head>s need more
DETECT_BYTES = 256 * 1024  # what charset detection is shown of an undeclared page
ESC = b"\x1b"  # ISO-2022-JP's escapes: a body of ASCII that has one is asked about
STEP = 1024 * 1024  # text is converted this many bytes at a time


@dataclass(frozen=True)
class Converted:
    data: bytes  # the text in UTF-8
    encoding: str  # the Python codec it was decoded from
    note: str | None = None


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec used
    note: str | None = None


def split_content_type(content_type: str | None) -> tuple[str, str | None]:
    """`"text/html; charset=GBK"` → ("text/html", "GBK")."""
    if not content_type:
        return "", None
    if len(content_type) <= MAX_REMEMBERED:  # a site sends the same few, page after page
        return _split_remembered(content_type)
    return _split(content_type)


MAX_REMEMBERED = 200  # characters of a Content-Type value remembered (`_split_remembered`)


@functools.lru_cache(maxsize=64)
def _split_remembered(content_type: str) -> tuple[str, str | None]:
    return _split(content_type)


def _split(content_type: str) -> tuple[str, str | None]:
    """Parsed as email parses a header (parameters quoted, continued, RFC 2231-encoded)."""
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    if isinstance(charset, tuple):  # charset*=UTF-8''shift_jis
        charset = collapse_rfc2231_value(charset)
    return message.get_content_type(), charset or None


def is_text(content_type: str | None, body: bytes) -> bool:
    """Text types are converted to UTF-8; without a Content-Type, only markup counts as text."""
    if not content_type:
        return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"
    media_type = split_content_type(content_type)[0]
    major, _, minor = media_type.partition("/")
    if major == "text":
        return True
    return major == "application" and (
        minor in _TEXT_APPLICATION or minor.endswith(("+xml", "+json"))
    )


def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label as browsers read it (the WHATWG Encoding
    Standard's label table, from webencodings), or None when the label names no encoding
    that decodes text (`hex`, `rot13`, and WHATWG's "replacement" labels alike)."""
    if not label:
        return None
    encoding = webencodings.lookup(label.strip().strip("\"'"))
    if encoding is None or encoding.name == "replacement":
        return None
    name: str = encoding.codec_info.name
    return _DECODERS.get(name, name)


def _python_codec(name: str) -> str | None:
    """A codec name from charset detection (Python's spelling), through the same table."""
    codec = codec_for(name.replace("_", "-"))
    if codec is not None:
        return codec
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


# Where Python's codecs decode less than the WHATWG Encoding Standard's decoders, the
# standard's indexes fill in (docs/fidelity.md). windows-1252 (what iso-8859-1 and us-ascii
# mean on the web too): index-windows-1252 maps every byte; Python's cp1252 leaves exactly
# 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined, which the index maps to U+0081 ... U+009D.
_WINDOWS_1252 = "".join(
    chr(byte) if char == "\ufffe" else char
    for byte, char in enumerate(encodings.cp1252.decoding_table)
)


class _Windows1252(codecs.IncrementalDecoder):
    def decode(self, input: Any, final: bool = False) -> str:
        return codecs.charmap_decode(input, self.errors, _WINDOWS_1252)[0]


_WINDOWS_1252_INFO = codecs.CodecInfo(
    name="cp1252",
    encode=codecs.lookup("cp1252").encode,
    decode=lambda data, errors="strict": codecs.charmap_decode(data, errors, _WINDOWS_1252),
    incrementaldecoder=_Windows1252,
)


def _jis0208(data: bytes, at: int) -> str | None:
    """EUC-JP's two bytes at `at` as index-jis0208 reads them where Python's euc_jp has no
    mapping: NEC row 13 (circled digits, Roman numerals) and NEC's selection of IBM
    extensions (rows 89-92). cp932 has the same index at Shift_JIS's places, so the pair is
    moved there and read by it; U+FFFD for a pair the index has not either (one error, as
    WHATWG's decoder makes it); None for bytes that are no such pair."""
    pair = data[at : at + 2]
    if len(pair) < 2 or not (0xA1 <= pair[0] <= 0xFE and 0xA1 <= pair[1] <= 0xFE):
        return None
    row, cell = pair[0] - 0xA1, pair[1] - 0xA1
    lead = row // 2 + (0x81 if row < 62 else 0xC1)
    trail = cell + (0x9F if row % 2 else 0x40 if cell < 63 else 0x41)
    char = bytes([lead, trail]).decode("cp932", "replace")
    known = len(char) == 1 and char != "\ufffd" and not "\ue000" <= char <= "\uf8ff"
    return char if known else "\ufffd"  # (U+E000-U+F8FF: Shift_JIS's user-defined area)


def _codec_info(codec: str) -> codecs.CodecInfo:
    if codec == "cp1252":
        return _WINDOWS_1252_INFO
    try:
        return codecs.lookup(codec)
    except LookupError:  # x-user-defined lives in webencodings alone
        encoding = webencodings.lookup(codec)
        assert encoding is not None, codec
        info: codecs.CodecInfo = encoding.codec_info
        return info


def decode(body: bytes, content_type: str | None, url: str | None = None) -> Decoded:
    """The body as text (see to_utf8, which is what fetcher itself uses)."""
    converted = to_utf8(body, content_type, url)
    return Decoded(converted.data.decode("utf-8"), converted.encoding, converted.note)


def to_utf8(body: bytes, content_type: str | None, url: str | None = None) -> Converted:
    """The text in UTF-8, decoded by header charset, then BOM, then <meta>/<?xml?>
    declaration, then detection (hinted by `url`'s top-level domain, as browsers hint it).
    Converted a step at a time: memory holds the body and its UTF-8 form, never the whole
    text as a str (up to 4 bytes a character)."""
    codec, skip, notes = _choose(body, content_type, url)
    view = memoryview(body)[skip:]
    if codec == "utf-8" and is_utf8(view):  # (most of the web: nothing to convert)
        return Converted(bytes(view), codec, "; ".join(notes) or None)
    out = io.BytesIO()
    _replaced.count = 0
    decoder = _codec_info(codec).incrementaldecoder(REPLACE)
    for start in range(0, len(view), STEP):
        text = decoder.decode(view[start : start + STEP], start + STEP >= len(view))
        out.write(text.encode("utf-8", "replace"))
    if _replaced.count:
        notes.append(f"{_replaced.count} byte sequences invalid in {codec} replaced with U+FFFD")
    return Converted(out.getvalue(), codec, "; ".join(notes) or None)


def _replace_and_count(error: UnicodeError) -> tuple[str, int]:
    """The "replace" error handler (one U+FFFD per invalid sequence), counting as it goes:
    one pass, and a page's own U+FFFD characters are not counted as errors. EUC-JP's pairs
    that WHATWG's index has and Python's codec lacks are read, not replaced."""
    assert isinstance(error, UnicodeDecodeError)
    if error.encoding == "euc_jp" and (char := _jis0208(error.object, error.start)):
        _replaced.count += char == "\ufffd"
        return char, error.start + 2
    _replaced.count += 1
    return "\ufffd", error.end


REPLACE = "fetcher.replace"
_replaced = threading.local()
codecs.register_error(REPLACE, _replace_and_count)


def _choose(body: bytes, content_type: str | None, url: str | None) -> tuple[str, int, list[str]]:
    """(codec, bytes of BOM to skip, notes) in the contract's order."""
    header_label = split_content_type(content_type)[1]
    notes: list[str] = []
    codec = codec_for(header_label)
    if header_label and not codec:
        notes.append(f"unknown charset {header_label!r} in Content-Type")
    if codec:
        return codec, 0, notes
    for bom, bom_codec in _BOMS:
        if body.startswith(bom):
            return bom_codec, len(bom), notes
    return _from_declaration(body, notes) or _undeclared(body, url, notes), 0, notes


def _undeclared(body: bytes, url: str | None, notes: list[str]) -> str:
    """UTF-8 if the body is valid UTF-8, else chardetng's guess, which `note` owns up to (so
    that every guessed page can be found in the records)."""
    if is_utf8(body) and not (ESC in body[:DETECT_BYTES] and body.isascii()):  # ISO-2022-JP?
        return "utf-8"
    label = guess(body, top_level_domain(url))
    notes.append(
        f"charset guessed: {label} ({'none usable declared' if notes else 'none declared'})"
    )
    return _python_codec(label) or "cp1252"


def _from_declaration(body: bytes, notes: list[str]) -> str | None:
    """The codec an `<?xml?>` declaration at the start names, or the first `<meta>` that
    declares one (the HTML Standard's prescan); each unknown label met is noted."""
    head = body[:PRESCAN_BYTES]
    match = _XML_DECL.match(head)
    label: str | None
    if match:
        xml_label = match.group(1).decode("ascii")
        label, unknown = xml_label, [] if codec_for(xml_label) else [xml_label]
    else:
        label, unknown = prescan(head, codec_for)
    notes.extend(f"unknown charset {each!r} declared in the document" for each in unknown)
    codec = codec_for(label)
    if codec is None:
        return None
    if codec.startswith(("utf-16", "utf-32")):
        return "utf-8"  # a declaration we could read in ASCII cannot be UTF-16 (as WHATWG)
    if match is None and codec == "x-user-defined":
        return "cp1252"  # nor can a <meta> pick x-user-defined (the prescan's own rule)
    return codec


def is_utf8(body: bytes | memoryview) -> bool:
    """Valid UTF-8 is UTF-8: nearly always right for an undeclared page, and fast."""
    view = memoryview(body)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(view), STEP):
            decoder.decode(view[start : start + STEP], start + STEP >= len(view))
    except UnicodeDecodeError:
        return False
    return True


def guess(body: bytes, tld: bytes | None = None) -> str:
    """The WHATWG name of the legacy encoding Firefox's detector (chardetng) reads `body` in.

    chardetng is made for this very case, a web page with no declaration, and the top-level
    domain tips it as it tips the browser (`.jp` leans to Shift_JIS, `.ru` to windows-1251).
    It is shown the first DETECT_BYTES: the guess is settled long before.
    """
    # imported here: most pages never need it (its stubs ship without a py.typed marker)
    from chardetng_py.detector import EncodingDetector  # type: ignore[import-untyped]

    detector = EncodingDetector()
    detector.feed(body[:DETECT_BYTES], last=True)
    label: str = detector.guess(tld=tld, allow_utf8=False)
    return label.lower()


def top_level_domain(url: str | None) -> bytes | None:
    """The last label of `url`'s host, lower-case ASCII (punycode), as chardetng takes it;
    None for an IP address or a URL without a host name."""
    if not url:
        return None
    host = (urlsplit(url).hostname or "").rstrip(".")
    label = host.rpartition(".")[2]
    if not label or label.isdigit() or ":" in host:
        return None
    try:
        return label.encode("idna").lower()
    except UnicodeError:
        return None
