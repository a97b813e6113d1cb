"""The charset a document's `<meta>` declares, found as browsers find it: the HTML Standard's
"prescan a byte stream to determine its encoding" (§13.2.3.2), to the letter. Comments are
skipped, other tags' attributes are stepped over (a `>` in a quoted value does not end them),
and a `<meta>` declares only with a `charset` attribute, or with `http-equiv=content-type` and
a `content` holding `charset=` (a description that mentions "charset=koi8-r" declares nothing).
"""

from __future__ import annotations

from collections.abc import Callable

_SPACE = b"\t\n\x0c\r "
_SPACE_OR_SLASH = _SPACE + b"/"


def prescan(head: bytes, lookup: Callable[[str], str | None]) -> tuple[str | None, list[str]]:
    """The label `head`'s first declaring `<meta>` names, as `lookup` reads it (None: not an
    encoding), and the labels met on the way that name none; (None, those labels) if no meta
    declares one it knows."""
    unknown: list[str] = []
    at, end = 0, len(head)
    while (at := head.find(b"<", at)) >= 0:
        if head.startswith(b"<!--", at):
            close = head.find(b"-->", at + 2)
            if close < 0:
                break
            at = close + 3
        elif head[at : at + 5].lower() == b"<meta" and _one_of(head, at + 5, _SPACE_OR_SLASH):
            at, label = _meta(head, at + 5)
            if label is not None:
                if lookup(label) is not None:
                    return label, unknown
                unknown.append(label)
        elif head[at + 1 : at + 2].isalpha() or (
            head[at + 1 : at + 2] == b"/" and head[at + 2 : at + 3].isalpha()
        ):
            at += 2
            while at < end and head[at] not in _SPACE and head[at] != ord(">"):
                at += 1
            while (attribute := _attribute(head, at)) is not None:
                at = attribute[0]
            at = _after_attributes(head, at)
        elif head[at + 1 : at + 2] in (b"!", b"/", b"?"):
            close = head.find(b">", at + 1)
            if close < 0:
                break
            at = close + 1
        else:
            at += 1
    return None, unknown


def _one_of(head: bytes, at: int, among: bytes) -> bool:
    return at < len(head) and head[at] in among


def _after_attributes(head: bytes, at: int) -> int:
    return at + 1 if head[at : at + 1] == b">" else at


def _meta(head: bytes, at: int) -> tuple[int, str | None]:
    """Past a `<meta`'s attributes, and the label it declares (None: it declares none)."""
    seen: set[bytes] = set()
    got_pragma, need_pragma, charset = False, None, None
    while (attribute := _attribute(head, at)) is not None:
        at, name, value = attribute
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv" and value.lower() == b"content-type":
            got_pragma = True
        elif name == b"content" and charset is None:
            charset = _from_content(value)
            need_pragma = True if charset is not None else need_pragma
        elif name == b"charset":
            charset, need_pragma = value, False
    at = _after_attributes(head, at)
    if need_pragma is None or (need_pragma and not got_pragma) or charset is None:
        return at, None
    return at, charset.decode("latin-1").strip(_SPACE.decode())


def _attribute(head: bytes, at: int) -> tuple[int, bytes, bytes] | None:
    """The spec's "get an attribute": (where it ends, name, value), None if none is next."""
    end = len(head)
    while at < end and head[at] in _SPACE_OR_SLASH:
        at += 1
    if at >= end or head[at] == ord(">"):
        return None
    name = bytearray()
    while at < end:
        byte = head[at]
        if byte == ord("=") and name:
            return _value(head, at + 1, bytes(name))
        if byte in _SPACE:
            while at < end and head[at] in _SPACE:
                at += 1
            if head[at : at + 1] != b"=":
                return at, bytes(name), b""
            return _value(head, at + 1, bytes(name))
        if byte in b"/>":
            return at, bytes(name), b""
        name.append(byte + 32 if 65 <= byte <= 90 else byte)
        at += 1
    return None


def _value(head: bytes, at: int, name: bytes) -> tuple[int, bytes, bytes] | None:
    end = len(head)
    while at < end and head[at] in _SPACE:
        at += 1
    if at >= end:
        return None
    if head[at] in b"\"'":
        close = head.find(head[at : at + 1], at + 1)
        if close < 0:
            return None
        return close + 1, name, head[at + 1 : close].lower()
    if head[at] == ord(">"):
        return at, name, b""
    start = at
    while at < end and head[at] not in _SPACE and head[at] != ord(">"):
        at += 1
    return (at, name, head[start:at].lower()) if at < end else None


def _from_content(content: bytes) -> bytes | None:
    """The spec's "extract a character encoding from a meta element" (a `content` value)."""
    at = 0
    while (at := content.find(b"charset", at)) >= 0:
        at += 7
        while content[at : at + 1] and content[at] in _SPACE:
            at += 1
        if content[at : at + 1] != b"=":
            continue
        at += 1
        while content[at : at + 1] and content[at] in _SPACE:
            at += 1
        quote = content[at : at + 1]
        if quote in (b'"', b"'"):
            close = content.find(quote, at + 1)
            return content[at + 1 : close] if close >= 0 else None
        stop = at
        while stop < len(content) and content[stop] not in _SPACE and content[stop] != ord(";"):
            stop += 1
        return content[at:stop] or None
    return None
