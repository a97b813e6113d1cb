"""fetcher: fetch lists of web pages concurrently and save them to disk.

The library API is :func:`fetch`; the command line (`fetcher --help`) is a thin layer over it.
The names below are imported when first used, so `python -m fetcher` can take charge of
Ctrl-C before the heavy imports start (see fetcher.__main__).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fetcher._version import __version__

if TYPE_CHECKING:
    from fetcher.api import fetch
    from fetcher.records import Record
    from fetcher.settings import Settings

__all__ = ["Record", "Settings", "__version__", "fetch"]
_LAZY = {"fetch": "fetcher.api", "Record": "fetcher.records", "Settings": "fetcher.settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fetcher' has no attribute {name!r}")
