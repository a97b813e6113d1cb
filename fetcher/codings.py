"""Content-Encoding: undo gzip, deflate, br and zstd in bounded steps, and insist on the end.

We decode ourselves, over zlib and the brotli and zstd libraries that urllib3's extras
install, rather than through urllib3's decoders, for two reasons measured against hostile
servers: those decoders never say whether a stream reached its end marker (a gzip body cut
short was saved as a whole page), and a read that decodes to nothing looked like the end of
the body (endless empty deflate blocks were saved as a 0-byte page). Here every stage yields
at most `step` bytes at a time, so a bomb is stopped at --max-size while it inflates, and
`finish()` fails a stream that stopped before its end.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from fetcher.errors import FetchError, TooLarge

brotli: Any
zstd: Any
try:
    import brotli  # type: ignore[import-untyped,no-redef]
except ImportError:  # pragma: no cover - installed with fetcher (urllib3[brotli])
    brotli = None
try:
    from backports import zstd
except ImportError:  # pragma: no cover - Python 3.14 has it in the standard library
    try:
        from compression import zstd  # type: ignore[import-not-found,no-redef]
    except ImportError:
        zstd = None

STEP = 64 * 1024
OWS = " \t"  # what surrounds a list's items (RFC 9110 §5.6.1); str.strip() would also take
# NBSP, \x1c-\x1f and NEL, turning "\x1egzip" into a coding no strict reader knows of
MAX_CODINGS = 5  # curl's limit: more stacked codings are an attack, not a page
WINDOWED = frozenset({"br", "zstd"})  # decoders whose window may be megabytes
GZIP_MAGIC = b"\x1f\x8b"
# RFC 9659: a decoder of the HTTP "zstd" coding need not accept windows over 8 MiB, and a
# larger one would let a frame header alone claim that much memory.
ZSTD_WINDOW_LOG_MAX = 23


class Stage(Protocol):
    def decode(self, data: bytes, step: int) -> Iterator[bytes]: ...

    @property
    def finished(self) -> bool: ...


class _Zlib:
    """gzip (members one after another, as RFC 1952 allows) or deflate (zlib or bare)."""

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self.obj: Any = None  # made on the first bytes: deflate's format is told by them
        self.pending = b""  # too few bytes yet to tell what comes
        self.ignoring = False  # bytes after the end are ignored, as browsers and curl do

    @property
    def finished(self) -> bool:
        return self.obj is not None and self.obj.eof

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        data, self.pending = self.pending + data, b""
        while data and not self.ignoring:
            if self.obj is None or self.obj.eof:
                if len(data) < 2:
                    self.pending = data
                    return
                if self.obj is not None and not (self.gzip and data.startswith(GZIP_MAGIC)):
                    self.ignoring = True
                    return
                self.obj = zlib.decompressobj(self._wbits(data))
            yield from self._inflate(data, step)
            data = self.obj.unused_data if self.obj.eof else b""

    def _wbits(self, data: bytes) -> int:
        if self.gzip:
            return 16 + zlib.MAX_WBITS
        zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        return zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS  # many servers send bare

    def _inflate(self, data: bytes, step: int) -> Iterator[bytes]:
        while True:
            out = self.obj.decompress(data, step)
            if out:
                yield out
            data = self.obj.unconsumed_tail
            if self.obj.eof or (not data and len(out) < step):
                return


class _Brotli:
    def __init__(self) -> None:
        self.obj = brotli.Decompressor()

    @property
    def finished(self) -> bool:
        return bool(self.obj.is_finished())

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        out = self.obj.process(data, output_buffer_limit=step)
        while out:  # output may be pending whether or not it can take more input
            yield out
            out = self.obj.process(b"", output_buffer_limit=step)


class _Zstd:
    def __init__(self) -> None:
        self.obj = self._new()

    @staticmethod
    def _new() -> Any:
        options = {zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX}
        return zstd.ZstdDecompressor(options=options)

    @property
    def finished(self) -> bool:
        return bool(self.obj.eof)

    def decode(self, data: bytes, step: int) -> Iterator[bytes]:
        while True:
            if self.obj.eof:  # frames may follow one another
                data = self.obj.unused_data + data
                if not data:
                    return
                self.obj = self._new()
            elif not data and self.obj.needs_input:
                return
            out = self.obj.decompress(data, step)
            data = b""
            if out:
                yield out


_FACTORIES: dict[str, Any] = {
    "gzip": lambda: _Zlib(gzip=True),
    "x-gzip": lambda: _Zlib(gzip=True),
    "deflate": lambda: _Zlib(gzip=False),
    "identity": None,  # no coding at all: no stage
}
if brotli is not None:
    _FACTORIES["br"] = _Brotli
if zstd is not None:
    _FACTORIES["zstd"] = _Zstd
ERRORS: tuple[type[BaseException], ...] = (
    (zlib.error,)
    + ((brotli.error,) if brotli is not None else ())
    + ((zstd.ZstdError,) if zstd is not None else ())
)

# What we ask servers for: only what we can undo.
ACCEPT_ENCODING = ", ".join(c for c in ("gzip", "deflate", "br", "zstd") if c in _FACTORIES)


class Decoder:
    """Undo a response's Content-Encoding (codings listed in the order they were applied).

    Every stage's output counts against `limit`, not just the last one's: a layer that
    inflates to nothing but feeds the next layer gigabytes would otherwise run unbounded.
    `check` is called between pieces: decoding is CPU work, which the watchdog's socket
    shutdown cannot interrupt, so it must look at the deadline itself.
    """

    def __init__(
        self,
        content_encoding: str | None,
        limit: int,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        names = [c.strip(OWS).lower() for c in (content_encoding or "").split(",") if c.strip(OWS)]
        unknown = [n for n in names if n not in _FACTORIES]
        if unknown:
            raise FetchError(f"unsupported Content-Encoding: {unknown[0][:40]}")
        if len(names) > MAX_CODINGS:
            raise FetchError(f"{len(names)} Content-Encodings stacked (at most {MAX_CODINGS})")
        if sum(n in WINDOWED for n in names) > 1:  # each would hold a window of up to 16 MiB
            raise FetchError("more than one br or zstd layer in Content-Encoding")
        self.stages: list[Stage] = [_FACTORIES[n]() for n in reversed(names) if _FACTORIES[n]]
        self.produced = [0] * len(self.stages)
        self.limit, self.check = limit, check

    def __bool__(self) -> bool:
        return bool(self.stages)

    def decode(self, data: bytes, step: int = STEP) -> Iterator[bytes]:
        """The decoded bytes of `data`, in pieces of at most `step` bytes."""
        try:
            yield from self._through(0, data, step)
        except ERRORS as exc:
            raise _corrupt(exc) from None

    def _through(self, index: int, data: bytes, step: int) -> Iterator[bytes]:
        if index == len(self.stages):
            yield data
            return
        for piece in self.stages[index].decode(data, step):
            self.produced[index] += len(piece)
            if self.produced[index] > self.limit:
                raise TooLarge(
                    f"larger than --max-size {self.limit} bytes (a compressed layer inflates"
                    f" to more than {self.produced[index]} bytes)"
                )
            self.check()
            yield from self._through(index + 1, piece, step)

    def finish(self) -> None:
        """Fail unless every stage reached its end marker: the body was cut short."""
        for stage in self.stages:
            if not stage.finished:
                raise FetchError(
                    "compressed body ends before its end marker (cut short?)", transient=True
                )


def _corrupt(exc: BaseException) -> FetchError:
    return FetchError(f"body is not valid for its Content-Encoding ({exc})")
