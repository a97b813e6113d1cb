"""A worker thread's requests Session: made once from Settings, reused for every URL."""

from __future__ import annotations

import os
import threading
import warnings

import requests
import urllib3

from fetcher import watchdog
from fetcher.codings import ACCEPT_ENCODING
from fetcher.settings import Settings

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def make_session(settings: Settings) -> requests.Session:
    """A Session configured once, to be reused for every URL one thread fetches."""
    session = requests.Session()
    adapter = watchdog.WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.user_agent
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    session.headers.update(dict(settings.headers))
    session.verify = settings.verify
    _read_environment_once(session)
    if settings.verify is False:  # asked for with --insecure: not worth a warning per request
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    return session


def _read_environment_once(session: requests.Session) -> None:
    """Honour proxies, .netrc and CA-bundle variables as requests does, without its cost.

    With `trust_env`, requests reads the environment twice per request (a quarter of the
    time a keep-alive request takes). When there is no proxy and no .netrc to honour, we turn
    it off and apply the CA-bundle variables ourselves; otherwise requests keeps doing it.
    """
    names = {name.lower() for name in os.environ}
    netrc = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if names & set(PROXY_VARIABLES) or os.path.exists(netrc):
        return
    session.trust_env = False
    bundle = next((os.environ[n] for n in CA_VARIABLES if os.environ.get(n)), None)
    if session.verify is True and bundle:
        session.verify = bundle


_local = threading.local()


def thread_session(settings: Settings) -> requests.Session:
    """This thread's own Session, made once (requests Sessions are not thread-safe).

    Kept while the settings stay equal: a Dask worker's threads get a fresh copy of the
    same settings with every chunk, and keep their connections across chunks.
    """
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None or getattr(_local, "settings", None) != settings:
        session = _local.session = make_session(settings)
        _local.settings = settings
    return session
