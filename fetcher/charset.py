"""Which bodies are text, and how to turn their bytes into str, in the contract's order."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from email.message import Message

import webencodings

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
_META = re.compile(rb"<meta[^>]+?charset\s*=\s*[\"']?\s*([a-z0-9_:.+-]+)", re.IGNORECASE)
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]+?encoding\s*=\s*[\"']([a-z0-9_.:-]+)[\"']", re.IGNORECASE)
PRESCAN_BYTES = 4096  # browsers look at the first 1024; pages with long <head>s need more


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec used
    note: str | None = None


def split_content_type(content_type: str | None) -> tuple[str, str | None]:
    """`"text/html; charset=GBK"` → ("text/html", "GBK")."""
    if not content_type:
        return "", None
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


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


def _codec_info(codec: str) -> codecs.CodecInfo:
    try:
        return codecs.lookup(codec)
    except LookupError:  # x-user-defined lives in webencodings alone
        encoding = webencodings.lookup(codec)
        assert encoding is not None, codec
        info: codecs.CodecInfo = encoding.codec_info
        return info


def decode(body: bytes, content_type: str | None) -> Decoded:
    """Decode by header charset, then BOM, then <meta>/<?xml?> declaration, then detection."""
    header_label = split_content_type(content_type)[1]
    notes: list[str] = []
    codec = codec_for(header_label)
    if header_label and not codec:
        notes.append(f"unknown charset {header_label!r} in Content-Type")
    if not codec:
        codec, body = _from_bom(body)
    if not codec:
        codec = _from_declaration(body, notes)
    if not codec:
        codec = detect(body)
    return _decode_with(body, codec, notes)


def _from_bom(body: bytes) -> tuple[str | None, bytes]:
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec, body[len(bom) :]
    return None, body


def _from_declaration(body: bytes, notes: list[str]) -> str | None:
    head = body[:PRESCAN_BYTES]
    match = _XML_DECL.match(head) or _META.search(head)
    if not match:
        return None
    label = match.group(1).decode("ascii")
    codec = codec_for(label)
    if codec is None:
        notes.append(f"unknown charset {label!r} declared in the document")
    elif codec.startswith(("utf-16", "utf-32")):
        return "utf-8"  # a declaration we could read in ASCII cannot be UTF-16 (as WHATWG)
    return codec


def detect(body: bytes) -> str:
    """Valid UTF-8 is UTF-8 (nearly always right, and fast); otherwise ask charset-normalizer."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    from charset_normalizer import from_bytes  # imported here: most pages never need it

    best = from_bytes(body).best()
    return (_python_codec(best.encoding) if best is not None else None) or "cp1252"


def _decode_with(body: bytes, codec: str, notes: list[str]) -> Decoded:
    info = _codec_info(codec)
    try:
        text = info.decode(body)[0]
    except UnicodeDecodeError:
        text = info.decode(body, "replace")[0]
        notes.append(
            f"{text.count(chr(0xFFFD))} byte sequences invalid in {codec} replaced with U+FFFD"
        )
    return Decoded(text, codec, "; ".join(notes) or None)
