"""How many pages per second the single writer on the driver sustains (the --dask ceiling).

    python bench/writer.py [--pages 20000] [--size 20000]

Under --dask every page comes back to the machine that runs fetcher, where one thread saves
it (temporary file + rename) and the index records it. This times exactly that path —
`fetcher.store.save_page` and `Index.put`, with the index's group commits — on pages already in
memory, so no network and no cluster: the ceiling no number of workers can lift.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fetcher.paths import path_for
from fetcher.records import Copy, Record
from fetcher.store import OutDir, save_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=20_000)
    options = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="fetcher-writer-"))
    body = (b"<p>lorem ipsum dolor sit amet</p>\n" * (options.size // 34 + 1))[: options.size]
    digest = hashlib.sha256(body).hexdigest()
    try:
        with OutDir(out) as outdir:
            started = time.perf_counter()
            for i in range(options.pages):
                url = f"http://site-{i % 50}.example/p/{i}.html"
                copy = Copy(path_for(url), len(body), digest, "text/html")
                record = Record(url=url, outcome="fetched", status=200, copy=copy, attempts=1)
                outdir.index.put(save_page(record, body, out))
            saved = time.perf_counter() - started
        indexed = time.perf_counter() - started  # closing waits for the last commit
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"{options.pages} pages of {options.size} bytes: saved in {saved:.2f} s, indexed in "
        f"{indexed:.2f} s: {options.pages / indexed:.0f} pages/s, "
        f"{options.pages * options.size / indexed / 2**20:.0f} MiB/s"
    )


if __name__ == "__main__":
    main()
