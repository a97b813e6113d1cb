"""The ceiling of fetcher's own stack: requests Sessions in threads (and spawned processes),
each thread looping over its share of the list and writing each page to a file. No
dispatcher, index, decoding, retries or records: what fetcher is measured against.

    python bench/bare_stack.py URLS OUT --threads N [--processes P]

Process p of P takes every P-th URL from the p-th; its thread t of N every N-th of those.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
from pathlib import Path

import requests


def run_threads(urls: list[tuple[int, str]], out: Path, threads: int, verify: str | bool) -> None:
    def loop(share: list[tuple[int, str]]) -> None:
        session = requests.Session()
        session.verify = verify
        for number, url in share:
            response = session.get(url, timeout=30)
            response.raise_for_status()
            (out / f"{number}.html").write_bytes(response.content)

    workers = [threading.Thread(target=loop, args=(urls[t::threads],)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--processes", type=int, default=0)
    parser.add_argument("--ca-bundle", default=None)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    urls = list(enumerate(options.urls.read_text().split()))
    verify: str | bool = options.ca_bundle or True
    if not options.processes:
        run_threads(urls, options.out, options.threads, verify)
        return
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(
            target=run_threads,
            args=(urls[p :: options.processes], options.out, options.threads, verify),
        )
        for p in range(options.processes)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(process.exitcode)


if __name__ == "__main__":
    main()
