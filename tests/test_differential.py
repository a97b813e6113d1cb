"""Differential test: generated and mutated HTTP/1.1 responses, each judged by a strict
reference (h11 fed the whole answer at once, then zlib, brotli and zstandard decoding it
exactly), and fetched by fetcher over a real socket. fetcher must never save bytes the
reference would not deliver: neither a page the reference refuses, nor other bytes than it
delivers. (Refusing what the reference delivers is allowed, and counted.)

The seed is random unless FETCHER_DIFF_SEED is set, and printed with any failure;
FETCHER_DIFF_CASES sets the number of cases. Also a script, to measure any checkout:

    PYTHONPATH=/path/to/checkout python3 tests/test_differential.py [--cases N] [--seed S]

(without PYTHONPATH, the installed fetcher is measured).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import zlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import brotli
import h11
import zstandard

from fetcher.session import thread_session
from fetcher.settings import Settings
from fetcher.task import Task, fetch_task

try:
    from tests.rawserver import RawServer, raw_server
except ImportError:  # run as a script, with another checkout's fetcher (and tests) first
    from rawserver import RawServer, raw_server  # type: ignore[no-redef]

CASES = int(os.environ.get("FETCHER_DIFF_CASES", "3000"))
MAX_SIZE = 4096
CODINGS = ["gzip", "deflate", "br", "zstd"]
REFUSED = None  # the reference's verdict on an answer it would not deliver


# --- generating answers --------------------------------------------------------------------


def encode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        import gzip

        return gzip.compress(data, mtime=0)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return brotli.compress(data, quality=1)
    return zstandard.ZstdCompressor(level=1).compress(data)


def generate(rng: random.Random) -> bytes:
    """A valid answer: status, headers, a coding or two, one of the three framings."""
    body = (
        rng.randbytes(rng.choice([0, 1, 5, 100, 2000, 5000]))
        if rng.random() < 0.5
        else (b"hello world " * rng.randint(0, 400))
    )
    codings = rng.sample(CODINGS, rng.choice([0, 0, 1, 1, 2]))
    if {"br", "zstd"} <= set(codings):  # fetcher refuses two windowed layers (memory)
        codings.remove("br")
    for coding in codings:
        body = encode(coding, body)
    status = rng.choice([b"200 OK"] * 8 + [b"204 No Content", b"206 Partial", b"404 Not Found"])
    headers = [b"Content-Type: application/octet-stream"]
    if codings:
        headers.append(b"Content-Encoding: " + b", ".join(c.encode() for c in codings))
    headers += [
        b"X-Filler-%d: %s" % (i, b"v" * rng.randint(0, 50)) for i in range(rng.randint(0, 4))
    ]
    framing = rng.choice(["length", "chunked", "close"])
    if framing == "length":
        headers.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        body = chunk(rng, body)
    rng.shuffle(headers)
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" if rng.random() < 0.05 else b""
    eol = b"\n" if rng.random() < 0.05 else b"\r\n"
    head = eol.join([b"HTTP/1.1 " + status, *headers]) + eol + eol
    return interim + head + body


def chunk(rng: random.Random, body: bytes) -> bytes:
    pieces, at = [], 0
    while at < len(body):
        size = rng.randint(1, max(1, len(body) // 3))
        piece = body[at : at + size]
        ext = b";x=1" if rng.random() < 0.1 else b""
        digits = b"%x" % len(piece) if rng.random() < 0.8 else b"%X" % len(piece)
        pieces.append(digits + ext + b"\r\n" + piece + b"\r\n")
        at += size
    trailer = b"X-Trailer: t\r\n" if rng.random() < 0.1 else b""
    return b"".join(pieces) + b"0\r\n" + trailer + b"\r\n"


# fmt: off
INTERESTING = [b" ", b"\t", b"\r", b"\n", b":", b"\x00", b"\x0b", b"+", b"-", b"x", b"0", b"9",
               b"f", b";", b",", b"\x1e", b"\x85", b"\xa0", b"\r\n", b"\r\n\r\n", b"HTTP/1.1 "]
# fmt: on


def mutate(rng: random.Random, answer: bytes) -> bytes:
    """One to three small changes, most of them in the head and the framing."""
    for _ in range(rng.randint(1, 3)):
        head_end = answer.find(b"\r\n\r\n")
        limit = len(answer) if head_end < 0 or rng.random() < 0.3 else head_end + 4
        at = rng.randrange(max(1, limit))
        kind = rng.randrange(5)
        if kind == 0:
            answer = answer[:at] + rng.choice(INTERESTING) + answer[at:]
        elif kind == 1:
            answer = answer[:at] + answer[at + 1 :]
        elif kind == 2:
            answer = answer[:at] + bytes([rng.randrange(256)]) + answer[at + 1 :]
        elif kind == 3:
            answer = answer[: rng.randrange(len(answer) + 1)]  # cut short
        else:
            line_end = answer.find(b"\n", at)
            line_start = answer.rfind(b"\n", 0, at) + 1
            if line_end > 0:
                answer = (
                    answer[:line_start]
                    + answer[line_start : line_end + 1] * 2
                    + answer[line_end + 1 :]
                )
    return answer


# --- the reference ---------------------------------------------------------------------------


_BLANK_LINE = re.compile(rb"\n\r?\n")  # where a head ends, as h11 finds it
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})")
_OTHER_MAJOR = re.compile(rb"HTTP/[02-9]\.[0-9] ")  # RFC 9110 §2.5: not HTTP/1.x
_FRAMING = (b"content-length", b"transfer-encoding")
# RFC 9112 §7.1: chunk-size *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
# and a line end (bare LF accepted, as in heads)
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*"'
_CHUNK = re.compile(
    rb"([0-9a-fA-F]{1,20})(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*\r?\n"
    % (_TOKEN, _TOKEN, _QUOTED)
)


def reference(answer: bytes) -> bytes | None:
    """The body a strict reader delivers for a GET of `answer` (bytes the server sent, then
    closed), decoded; REFUSED if it would deliver none (fetcher saves 2xx bodies only, and
    never a 206: it asks for no range).

    h11 reads the heads, after two departures made here first: a 1xx, 204 or 304 has no
    body whatever its framing headers say (they are dropped), and an HTTP/1.0 answer with
    Transfer-Encoding is refused (RFC 9112 §6.1), as is a head whose major version is not 1
    (RFC 9110 §2.5: another protocol). A chunked body is read here, to §7.1's
    grammar with bare LF line ends accepted."""
    answer, body_at = _heads_framed(answer)
    if body_at < 0:
        return REFUSED
    parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(answer)
    parser.receive_data(b"")
    status, codings, body, length = 0, b"", [], []
    try:
        while (event := parser.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.Response):
                status = event.status_code
                codings = b", ".join(v for n, v in event.headers if n == b"content-encoding")
                length = [int(v) for n, v in event.headers if n == b"content-length"]
                if any(n == b"transfer-encoding" for n, _ in event.headers):
                    dechunked = _dechunk(answer[body_at:])
                    if dechunked is REFUSED:
                        return REFUSED
                    body, event = [dechunked], h11.EndOfMessage()
                    break
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    except h11.RemoteProtocolError:
        return REFUSED
    if not isinstance(event, h11.EndOfMessage) or not 200 <= status < 300 or status == 206:
        return REFUSED
    if status == 204:
        return b""  # no body: nothing to decode or measure
    if length and length[0] > MAX_SIZE:  # --max-size refuses a declared length at once
        return REFUSED
    return decoded(b"".join(body), codings)


def _heads_framed(answer: bytes) -> tuple[bytes, int]:
    """`answer` with the framing headers of its bodiless heads (1xx, 204, 304) dropped, and
    where its body starts; -1 if an HTTP/1.0 head has Transfer-Encoding."""
    out, at = [], 0
    while (end := _BLANK_LINE.search(answer, at)) is not None:
        lines = answer[at : end.end()].split(b"\n")
        if _OTHER_MAJOR.match(lines[0]):  # another protocol's version: no HTTP/1.x answer
            return answer, -1
        status = _STATUS.match(lines[0])
        if status is None:
            break
        code = int(status[2])
        names = [line.split(b":", 1)[0].strip().lower() for line in lines[1:]]
        if code < 200 or code in (204, 304):
            lines = [
                lines[0],
                *(ln for ln, n in zip(lines[1:], names, strict=True) if n not in _FRAMING),
            ]
        elif status[1] == b"0" and _FRAMING[1] in names:
            return answer, -1
        out.append(b"\n".join(lines))
        at = end.end()
        if not 100 <= code < 200 or code == 101:
            break
    framed = b"".join(out)
    return framed + answer[at:], len(framed)


def _dechunk(data: bytes) -> bytes | None:
    pieces, at = [], 0
    while (line := _CHUNK.match(data, at)) is not None:
        size, at = int(line[1], 16), line.end()
        if size == 0:
            ends = data.startswith((b"\n", b"\r\n"), at) or _BLANK_LINE.search(data, at)
            return b"".join(pieces) if ends else REFUSED
        pieces.append(data[at : at + size])
        at += size
        if len(pieces[-1]) < size or not data.startswith((b"\n", b"\r\n"), at):
            return REFUSED
        at += 1 if data[at : at + 1] == b"\n" else 2
    return REFUSED


def decoded(body: bytes, codings: bytes) -> bytes | None:
    """Content-Encoding undone exactly: every layer must end where its format says it ends
    (bytes after the end are ignored, as browsers and curl ignore them), and what each layer
    gives counts against --max-size."""
    for name in reversed([c.strip(b" \t").lower() for c in codings.split(b",") if c.strip(b" \t")]):
        result = _undo(name.decode("latin-1"), body)
        if result is None or len(result) > MAX_SIZE:
            return REFUSED
        body = result
    return body if len(body) <= MAX_SIZE else REFUSED


def _undo(name: str, data: bytes) -> bytes | None:
    try:
        if name in ("gzip", "x-gzip"):
            return _gzip_members(data)
        if name == "deflate":
            wbits = zlib.MAX_WBITS if len(data) > 1 and (data[0] << 8 | data[1]) % 31 == 0 else -15
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(data)
            return out if inflater.eof else None
        if name == "br":
            return brotli.decompress(data)
        if name == "zstd":
            return _zstd_frames(data)
        return data if name == "identity" else None
    except (zlib.error, brotli.error, zstandard.ZstdError):
        return None


def _gzip_members(data: bytes) -> bytes | None:
    out = b""
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += inflater.decompress(data)
        if not inflater.eof:
            return None
        data = inflater.unused_data
        if not data.startswith(b"\x1f\x8b"):
            return out


def _zstd_frames(data: bytes) -> bytes | None:
    out = b""
    while data:
        reader = zstandard.ZstdDecompressor(max_window_size=2**23).decompressobj()
        out += reader.decompress(data)
        if not reader.eof:
            return None
        data = reader.unused_data
    return out


# --- fetcher, over a socket ------------------------------------------------------------------


def fetched(server: RawServer, number: int, answer: bytes, settings: Settings) -> bytes | None:
    """The bytes fetcher would save for `answer`, or None if it fails the URL."""
    path = f"/case/{number}"
    server.answers[path] = answer
    url = server.url(path)
    record, data = fetch_task(Task(number, url, url), settings)
    del server.answers[path]
    # The server closes each connection after its answer, which may say nothing of it: a
    # connection kept would race that close on the next case.
    thread_session(settings).close()
    return data if record.outcome == "fetched" else None


def run(cases: int, seed: int, settings: Settings) -> tuple[Counter[str], list[str]]:
    """Counts of each verdict, and the cases where fetcher saved what it should not have."""
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    wrong = []
    with raw_server() as server:
        for number in range(cases):
            answer = generate(rng)
            if rng.random() < 0.7:
                answer = mutate(rng, answer)
            expected, got = reference(answer), fetched(server, number, answer, settings)
            verdict = _verdict(expected, got)
            counts[verdict] += 1
            if verdict.startswith("WRONG"):
                wrong.append(f"case {number}: {verdict}: {answer[:300]!r}")
    return counts, wrong


def _verdict(expected: bytes | None, got: bytes | None) -> str:
    if got is None:
        return "agree: refused" if expected is None else "fetcher refused what reference delivers"
    if expected is None:
        return "WRONG: fetcher saved what the reference refuses"
    return "agree: same bytes" if got == expected else "WRONG: fetcher saved other bytes"


def settings_for(out: Path) -> Settings:
    """--raw: the body bytes saved as received (text conversion is not under test here)."""
    return Settings(out=out, retries=0, backoff=0, timeout=5, max_size=MAX_SIZE, raw=True)


def test_fetcher_never_saves_what_a_strict_reader_would_not_deliver(tmp_path) -> None:
    seed = int(os.environ.get("FETCHER_DIFF_SEED") or random.randrange(2**32))
    counts, wrong = run(CASES, seed, replace(settings_for(tmp_path / "out")))
    print(f"\nseed {seed}: {dict(counts)}")
    assert not wrong, f"seed {seed} (FETCHER_DIFF_SEED={seed} to replay):\n" + "\n".join(wrong[:10])
    assert counts["agree: same bytes"] > CASES // 4  # the generator makes mostly valid pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=CASES)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        counts, wrong = run(args.cases, args.seed, settings_for(Path(tmp)))
    agree = counts["agree: same bytes"] + counts["agree: refused"]
    print(f"seed {args.seed}, {args.cases} cases: agreement {agree / args.cases:.1%}")
    for verdict, count in sorted(counts.items()):
        print(f"  {count:6d}  {verdict}")
    for line in wrong[:5]:
        print(line)


if __name__ == "__main__":
    main()
