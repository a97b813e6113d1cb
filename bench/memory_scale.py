"""Peak memory of a whole run at 20,000 and at 200,000 distinct URLs: flat, or growing?

    python bench/memory_scale.py [--small 20000] [--large 200000] [--hosts]

Every URL points at a port where nothing listens on 127.0.0.1 (refused at once, --retries 0),
so the run is quick and what is measured is fetcher's own machinery per URL: intake,
dedupe, dispatch, records, the index. Prints the peak RSS (VmHWM) of each run and the ratio.
With --hosts every URL has a host of its own (127.x.y.z, all on loopback): per-host state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fetcher_command, free_port, measured, workdir


def peak(count: int, port: int, root: Path, hosts: bool) -> tuple[float, int]:
    urls = "".join(f"http://{_host(i, hosts)}:{port}/p/{i}?q={i * 7}\n" for i in range(count))
    out = root / f"out-{count}"
    command = fetcher_command("-", "-q", "--retries", "0", "-o", str(out))
    elapsed, code, rss = measured(command, stdin=urls)
    assert code == 3, f"expected every URL refused (exit 3), got {code}"
    return elapsed, rss


def _host(i: int, distinct: bool) -> str:
    return f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255 or 1}" if distinct else "127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--hosts", action="store_true", help="a host of its own for each URL")
    args = parser.parse_args()
    port = free_port()
    with workdir() as root:
        results = {n: peak(n, port, root, args.hosts) for n in (args.small, args.large)}
    for n, (elapsed, rss) in results.items():
        print(f"{n:>9,} URLs  {elapsed:6.1f} s  peak {rss / 2**20:6.1f} MiB")
    ratio = results[args.large][1] / results[args.small][1]
    print(f"ratio {ratio:.2f} (target at most 1.15)")


if __name__ == "__main__":
    main()
