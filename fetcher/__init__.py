"""fetcher: fetch lists of web pages concurrently and save them to disk.

The library API is :func:`fetch`; the command line (`fetcher --help`) is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from fetcher.api import fetch
from fetcher.records import Record
from fetcher.settings import Settings

__all__ = ["Record", "Settings", "__version__", "fetch"]
