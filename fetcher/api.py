"""The library API: fetch URLs from Python and get records back as they finish."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from fetcher.declare import declarations, user_value
from fetcher.errors import UsageError
from fetcher.inputs import Batch, url_batches
from fetcher.pools import pool_kind
from fetcher.records import Record
from fetcher.runner import Run
from fetcher.settings import Settings
from fetcher.store import OutDir

_D = Settings()  # the defaults, as on the command line


def fetch(
    urls: Iterable[str] | str,
    out: str | Path = _D.out,
    *,
    threads: int = _D.threads,
    processes: int = _D.processes,
    dask: str | None = _D.dask,
    retries: int = _D.retries,
    timeout: float = _D.timeout,
    max_size: int | str = _D.max_size,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = _D.headers,
    user_agent: str = _D.user_agent,
    proxy: str | None = _D.proxy,
    cookies: str | Path | None = None,
    verify: bool | str = _D.verify,
    per_host: int | None = _D.per_host,
    delay: float | str | tuple[float, float] = _D.delay,
    robots: bool = _D.robots,
    raw: bool = _D.raw,
    dedupe: bool = _D.dedupe,
    resume: bool = _D.resume,
    refresh: bool = _D.refresh,
    revalidate: bool = _D.revalidate,
    max_redirects: int = _D.max_redirects,
    backoff: float = _D.backoff,
    backoff_max: float = _D.backoff_max,
    retry_after_max: float = _D.retry_after_max,
    grace: float = _D.grace,
    warc: str | None = _D.warc,
    warc_max_size: int | str = _D.warc_max_size,
    warc_secrets: bool = _D.warc_secrets,
    pages: bool = _D.pages,
) -> Iterator[Record]:
    """Fetch `urls` (an iterable of URLs, or one URL) into `out`, yielding a Record per URL
    as each finishes. The options are the command line's: `max_size` takes 5_000_000 or
    "5M", `delay` 2 or a range (1, 3) or "1-3", `headers` a dict, `verify` False
    (--insecure) or a CA bundle's path, `cookies` a cookies.txt's path, `warc` a WARC file
    prefix (`pages=False`: archive only). With `processes`, call this under
    `if __name__ == "__main__":`.

    The out dir is locked while the iterator is open; close it (or exhaust it) to release.
    Raises OutDirBusy if another run holds `out`, UsageError if an option or `out` cannot be
    used.
    """
    given = dict(locals())  # the keywords: one per setting that Settings declares for fetch
    settings = user_settings({name: value for name, value in given.items() if name != "urls"})
    given_urls = [urls] if isinstance(urls, str) else urls  # a string is one URL, not its letters
    with open_run(url_batches(given_urls, dedupe=settings.dedupe), settings) as run:
        yield from run


def user_settings(given: Mapping[str, Any]) -> Settings:
    """Settings from a Python caller's values, each made the setting's by its declaration;
    UsageError says why one cannot be used."""
    declared = {name: each for name, _, each in declarations(Settings) if each.api}
    try:
        return Settings(**{name: user_value(declared[name], v) for name, v in given.items()})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


WARC_HINT = "--warc needs warcio and surt: pip install 'fetcher-pages[warc]' (the warc extra)"


def _take_up_warc(prefix: str, stderr: TextIO) -> None:
    """--warc: its extra installed; files a killed run left open with this prefix made
    whole, named and indexed (said on stderr)."""
    if importlib.util.find_spec("warcio") is None or importlib.util.find_spec("surt") is None:
        raise UsageError(WARC_HINT)
    from fetcher.store.warc import recover

    try:
        notes = recover(prefix)
    except OSError as exc:
        raise UsageError(f"cannot use --warc {prefix}: {exc.strerror or exc}") from None
    for note in notes:
        print(f"fetcher: {note}", file=stderr)


def _check_trust(settings: Settings) -> None:
    """A --ca-bundle from which no certificate can be read is bad usage, said at once (it
    is loaded once for the run): every URL would fail, each attempt after a connection.
    Not for a cluster's workers, which load it where they run."""
    if not isinstance(settings.verify, str) or pool_kind(settings).remote:
        return
    from fetcher.session import bundle_trust, bundle_version

    try:
        bundle_trust(settings.verify, bundle_version(settings.verify))
    except OSError as exc:  # (ssl.SSLError is one)
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        message = f"--ca-bundle {settings.verify} holds no certificate that can be read ({reason})"
        raise UsageError(message) from None


@contextmanager
def open_run(
    batches: Iterable[Batch], settings: Settings, stderr: TextIO | None = None
) -> Iterator[Run]:
    """A Run over `batches` of entries with its out dir created, locked and indexed for its
    lifetime; what it must tell people first (WARC files taken up) goes to `stderr`."""
    pool_kind(settings).require(settings)  # an extra installed; a __main__ guard, for processes
    _check_trust(settings)
    settings = replace(settings, out=Path(settings.out))
    if settings.warc is not None:
        _take_up_warc(settings.warc, stderr or sys.stderr)
    with OutDir(settings.out) as outdir:
        yield Run(batches, settings, outdir.index)
    if settings.warc is not None:  # files of worker processes that died during the run
        _take_up_warc(settings.warc, stderr or sys.stderr)
