"""A worker thread's requests Session: made once from Settings, reused for every URL.

Sessions are per thread (a Session is not thread-safe: cookies, headers), but their
connections are the process's: every thread's Session mounts the one Adapter made for the
settings (`shared_adapter`), whose urllib3 pools (thread-safe) hand a connection to a host,
once open, to whichever thread fetches that host next. A pool keeps at most `pool_size`
connections per host and never blocks: the run's --per-host limit, not the pool, decides
how many requests are in flight, and so no more connections are opened than that.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import requests
import urllib3
from requests.adapters import DEFAULT_POOLSIZE
from urllib3 import poolmanager
from urllib3.exceptions import ProtocolError
from urllib3.util import Retry
from urllib3.util.ssl_ import create_urllib3_context

from fetcher import watchdog
from fetcher.codings import ACCEPT_ENCODING
from fetcher.cookies import POLICY
from fetcher.settings import Settings

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def make_session(settings: Settings) -> requests.Session:
    """A Session configured once, to be reused for every URL one thread fetches."""
    session = requests.Session()
    session.verify = _verify(settings)
    adapter = shared_adapter(settings, session.verify)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.user_agent
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    session.headers.update(dict(settings.headers))
    session.cookies.set_policy(POLICY)
    if settings.proxy:
        session.proxies = {"http": settings.proxy, "https": settings.proxy}
    session.trust_env = _environment_needed(settings)
    if settings.verify is False:  # asked for with --insecure: not worth a warning per request
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    return session


def fresh_cookies(session: requests.Session, settings: Settings) -> None:
    """Every URL starts with the --cookies file's cookies alone: none that another URL got."""
    session.cookies.clear()
    for cookie in settings.cookies:
        session.cookies.set_cookie(cookie.to_cookiejar())


def _verify(settings: Settings) -> bool | str:
    """--insecure, --ca-bundle, else a CA-bundle variable (as requests and curl read them),
    else True: the system's trust store."""
    if settings.verify is not True:
        return settings.verify
    return next((os.environ[n] for n in CA_VARIABLES if os.environ.get(n)), True)


def _environment_needed(settings: Settings) -> bool:
    """Whether requests must keep reading the environment on every request (`trust_env`).

    It reads it twice per request (a quarter of the time a keep-alive request takes), for
    proxies, .netrc and CA bundles. The CA bundle is applied once here (`_verify`), and
    --proxy replaces the proxy variables; only what is left needs the per-request look.
    """
    names = {name.lower() for name in os.environ}
    netrc = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    proxies_from_environment = not settings.proxy and bool(names & set(PROXY_VARIABLES))
    return proxies_from_environment or os.path.exists(netrc)


@functools.cache
def system_trust() -> ssl.SSLContext:
    """The operating system's trust store, as pip uses it (truststore): on Linux OpenSSL's
    default paths (`SSL_CERT_FILE`, `SSL_CERT_DIR` honoured), on macOS and Windows the
    system's own verifier. Shared by every session: a context is safe across threads.

    Where truststore is not installed (a Dask worker needs only requests and distributed),
    OpenSSL's default paths: the same store on Linux.
    """
    try:
        import truststore
    except ImportError:
        return ssl.create_default_context()
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def pool_size(settings: Settings) -> int:
    """Connections to one host this process keeps: its share of --per-host (the run sends a
    worker process no more of a host's URLs at once), and no more than its threads."""
    if settings.per_host is None:
        return settings.threads
    return max(1, min(settings.threads, -(-settings.per_host // max(1, settings.processes))))


_adapters: dict[tuple[object, ...], Adapter] = {}
_adapters_lock = threading.Lock()
ADAPTERS_KEPT = 4  # settings whose connections a process keeps (a Dask worker serves runs)


def shared_adapter(settings: Settings, verify: bool | str) -> Adapter:
    """This process's Adapter for these settings, made once: its pools are every thread's.
    (Keyed by process too: a forked child must not use its parent's sockets; and by the
    CA bundle's version on disk: a bundle replaced between runs is loaded again.)"""
    key = (os.getpid(), settings, verify, bundle_version(verify))
    with _adapters_lock:
        adapter = _adapters.get(key)
        if adapter is None:
            while len(_adapters) >= ADAPTERS_KEPT:  # the oldest goes (its pools close when
                del _adapters[next(iter(_adapters))]  # the last Session using it is gone)
            bundle = verify if isinstance(verify, str) else None
            adapter = _adapters[key] = Adapter(trust_for(verify, key[3]), settings, bundle)
        return adapter


def bundle_version(verify: bool | str) -> tuple[int, ...]:
    """What tells one version of a CA bundle file or folder from another (empty if none)."""
    if not isinstance(verify, str):
        return ()
    try:
        found = os.stat(verify)
    except OSError:
        return ()
    return (found.st_mtime_ns, found.st_size, found.st_ino)


def trust_for(verify: bool | str, version: tuple[int, ...] = ()) -> ssl.SSLContext | None:
    """The TLS context that verifies what `verify` names: the system's store (True), or a
    CA bundle file or folder (--ca-bundle, or a variable) loaded once for the process,
    where requests would have it loaded into every new connection's context. None with
    --insecure, or for a bundle that cannot be loaded (requests then says why, per URL)."""
    if verify is True:
        return system_trust()
    if verify is False:
        return None
    try:
        return bundle_trust(verify, version)
    except (OSError, ssl.SSLError):
        return None


@functools.lru_cache(maxsize=8)
def bundle_trust(path: str, version: tuple[int, ...] = ()) -> ssl.SSLContext:
    """urllib3's own context for a CA bundle `path` (a file, or a folder of hashed
    certificates as c_rehash makes), as it would build one for each connection; `version`
    tells the file's contents apart (a new one, a new context)."""
    context = create_urllib3_context()
    if os.path.isdir(path):
        context.load_verify_locations(capath=path)
    else:
        context.load_verify_locations(cafile=path)
    return context


class Adapter(watchdog.WatchedAdapter):
    """Our connections (watched, see fetcher.watchdog), verified against the system's trust
    store, or a CA bundle loaded once (`trust_for`); requests would otherwise load certifi's
    bundle, or the given one into every new connection (and look at the disk for every
    request to tell a bundle's file from its folder).

    One per process and settings, shared by every thread: pools for up to `threads` hosts
    (at least requests' 10), each keeping `pool_size` connections, never blocking a thread.
    """

    def __init__(
        self, ssl_context: ssl.SSLContext | None, settings: Settings, bundle: str | None = None
    ) -> None:
        self.ssl_context = ssl_context
        self.bundle = bundle  # the CA bundle in `ssl_context`, if one is
        self.proxy_lock = threading.Lock()
        hosts = max(DEFAULT_POOLSIZE, settings.threads)
        super().__init__(
            pool_connections=hosts, pool_maxsize=pool_size(settings), max_retries=StaleRetry()
        )

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if self.ssl_context is not None and self.bundle and kwargs.get("verify") == self.bundle:
            kwargs["verify"] = True  # (the bundle is in the context: `trust_for`)
        return super().send(request, *args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> poolmanager.PoolManager:
        if self.ssl_context is not None:
            kwargs.setdefault("ssl_context", self.ssl_context)
        with self.proxy_lock:  # threads share the adapter: one manager per proxy, not two
            return super().proxy_manager_for(proxy, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if verify is True and self.ssl_context is not None and not cert:
            # the context's store, not certifi's: requests would look for certifi's bundle
            # on disk for every request (two stat calls), only for it to be dropped here
            conn.cert_reqs = "CERT_REQUIRED" if url[:6].lower() == "https:" else "CERT_NONE"
            conn.ca_certs = conn.ca_cert_dir = None
            return
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if verify is True and self.ssl_context is not None:
            conn.ca_certs = conn.ca_cert_dir = None


class StaleRetry(Retry):
    """No retries (fetcher.http decides those) but one: a request that a kept-alive
    connection could not carry, closed by the server as the request went and before any
    answer, goes once more on a new connection, as curl and browsers send it again."""

    def __init__(self, *args: Any, resent: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("total", 0)
        kwargs.setdefault("read", False)
        super().__init__(*args, **kwargs)
        self.resent = resent

    def new(self, **kwargs: Any) -> StaleRetry:
        kwargs.setdefault("resent", self.resent)
        return super().new(**kwargs)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> StaleRetry:
        if not self.resent and response is None and _stale(error):
            return self.new(resent=True)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _stale(error: Exception | None) -> bool:
    """Whether `error` is a kept-alive connection found closed before it answered."""
    watch = watchdog.current()
    if not watch.reused or watch.fired or not isinstance(error, ProtocolError):
        return False
    cause = error.args[1] if len(error.args) > 1 else None
    return isinstance(cause, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError))


_local = threading.local()
Made = TypeVar("Made")


def per_thread(name: str, key: tuple[object, ...], make: Callable[[], Made]) -> Made:
    """This thread's `name`, made once and kept while `key` stays equal: a Dask worker's
    threads get a fresh copy of the same settings with every chunk, and keep what they made.
    (A tuple compares its items by identity first: the same settings cost no field checks.)
    """
    made: tuple[tuple[object, ...], Made] | None = getattr(_local, name, None)
    if made is None or made[0] != key:
        made = (key, make())
        setattr(_local, name, made)
    return made[1]


def thread_session(settings: Settings) -> requests.Session:
    """This thread's own Session, made once (requests Sessions are not thread-safe) and
    kept while the settings stay equal; its connections are the process's (shared_adapter)."""
    return per_thread("session", (settings,), lambda: make_session(settings))
