"""The out dir and what goes into it, a room for each kind of output.

- `pages`: page writes, each appearing only whole (`save`, `save_page`), in folders a run
  keeps open (`folders`);
- `index`: the SQLite index of every URL's latest record, written by group commit (`Index`);
- `outdir`: the out dir held for one run: its state folder, the lock, the index (`OutDir`);
- `warc`, `warcrecords`: --warc's WARC files and the records in them (imported only then:
  they need the warc extra).

A new kind of output is a new room beside these.
"""

from __future__ import annotations

from fetcher.store.folders import Folders
from fetcher.store.index import Index
from fetcher.store.outdir import INDEX_NAME, LOCK_NAME, STATE_DIR, OutDir
from fetcher.store.pages import keep_page, save, save_page

__all__ = [
    "INDEX_NAME", "LOCK_NAME", "STATE_DIR", "Folders", "Index", "OutDir", "keep_page", "save",
    "save_page",
]  # fmt: skip
