"""Peer: one aiohttp session, N requests in flight, each body saved to a file.

python bench/aiohttp_peer.py URL_FILE OUT_DIR CONCURRENCY

HTTPS is verified against the bundle in $BENCH_CA_BUNDLE when it is set.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import aiohttp


async def main(urls: list[str], out: Path, concurrency: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bundle = os.environ.get("BENCH_CA_BUNDLE")
    context = ssl.create_default_context(cafile=bundle) if bundle else None
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context or True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int, url: str) -> None:
            async with limit, session.get(url) as response:
                response.raise_for_status()
                body = await response.read()
            (out / f"{index}.html").write_bytes(body)

        await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))


if __name__ == "__main__":
    listing, out, concurrency = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    asyncio.run(main(Path(listing).read_text().split(), out, concurrency))
