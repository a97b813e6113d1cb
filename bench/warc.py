"""What --warc costs per page: the same list from nginx with and without it, interleaved.

    python bench/warc.py [--pages 2000] [--threads 8] [--rounds 5]

Each round runs, in an order that rotates from round to round: a plain run (pages saved), a
run with --warc (pages saved and archived), and an archive-only run (--warc --no-pages),
each into a fresh out dir and archive. Prints per variant the median wall time and the
median CPU time (user + system of the fetcher process and its children) per page, and the
archive's size. fetcher runs from this checkout (`python -m fetcher`, bytecode compiled
first), not from whatever `fetcher` is installed.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import make_site, median, nginx, workdir

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "plain": [],
    "warc": ["--warc", "{arc}"],
    "warc-only": ["--warc", "{arc}", "--no-pages"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    compileall.compile_dir(ROOT / "fetcher", quiet=1)
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    sizes: dict[str, int] = {}
    with workdir() as root, nginx(root) as ports:
        paths = make_site(root, options.pages)
        urls = "".join(f"http://127.0.0.1:{ports['http']}{p}\n" for p in paths)
        names = list(VARIANTS)
        for number in range(options.rounds + 1):  # the first round is untimed
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                elapsed, seconds, size = _run(root, name, urls, options.threads)
                if number:
                    wall[name].append(elapsed)
                    cpu[name].append(seconds)
                    sizes[name] = size
    print(
        f"{options.pages} pages of ~20 kB from nginx, --threads {options.threads}, "
        f"median of {options.rounds} interleaved rounds"
    )
    print(f"{'variant':<11}{'wall s':>8}{'CPU µs/page':>13}{'vs plain':>10}{'archive':>12}")
    base = median(cpu["plain"])
    for name in VARIANTS:
        per_page = median(cpu[name]) / options.pages * 1e6
        extra = (median(cpu[name]) - base) / options.pages * 1e6
        size = f"{sizes[name] / 1e6:.1f} MB" if sizes[name] else "-"
        print(f"{name:<11}{median(wall[name]):>8.2f}{per_page:>13.0f}{extra:>+10.0f}{size:>12}")


def _run(root: Path, name: str, urls: str, threads: int) -> tuple[float, float, int]:
    """One run: wall seconds, CPU seconds of the process and its children, archive bytes."""
    out, arc = root / "out", root / "arc"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(arc, ignore_errors=True)
    extra = [a.format(arc=arc / "crawl") for a in VARIANTS[name]]
    command = [sys.executable, "-m", "fetcher", "-", "-o", str(out), "-q", "-t", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*command, *extra], input=urls, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, f"{name}: exit {done.returncode}"
    seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    size = sum(f.stat().st_size for f in arc.glob("*")) if arc.exists() else 0
    return elapsed, seconds, size


if __name__ == "__main__":
    main()
