"""Peer: the naive `multiprocessing.dummy.Pool(n).map(requests.get, urls)`; nothing saved.

python bench/naive_peer.py URL_FILE CONCURRENCY

HTTPS is verified against $REQUESTS_CA_BUNDLE, as requests does by itself.
"""

from __future__ import annotations

import sys
from multiprocessing.dummy import Pool
from pathlib import Path

import requests

if __name__ == "__main__":
    urls = Path(sys.argv[1]).read_text().split()
    with Pool(int(sys.argv[2])) as pool:
        pool.map(requests.get, urls)
