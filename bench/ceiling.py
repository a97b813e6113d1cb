"""fetcher against the ceiling of its own stack (bench/bare_stack.py), side by side.

    python bench/ceiling.py [--repeat 5] [--scale 1.0] [--only static,latency,single]
                            [--out-dir DIR]

The same URL list, the same threads and processes, runs interleaved after one untimed round
(which tool goes first alternates from round to round), medians. Rows: static pages at -t 8
and -p 2 -t 4; pages after 50 ms at -t 128 and -p 2 -t 64; and -t 1 against a single Session
loop. fetcher runs with `--per-host` out of the way, as the stack has none, and `-q`.
`--out-dir` puts the pages somewhere else than the work dir (e.g. /dev/shm: on a machine
whose disk costs vary from minute to minute, the file system then stops drowning the
difference between the two).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fetcher_command, make_site, measured, median, nginx, workdir

HERE = Path(__file__).resolve().parent
# (workload, pages, prefix, threads, processes)
ROWS = [
    ("static", 5000, "", 8, 0),
    ("static", 5000, "", 4, 2),
    ("latency", 5000, "/slow", 128, 0),
    ("latency", 5000, "/slow", 64, 2),
    ("single", 2000, "", 1, 0),
]


def commands(listing: Path, out: Path, threads: int, processes: int) -> dict[str, list[str]]:
    shape = ["--threads", str(threads)] + (["--processes", str(processes)] if processes else [])
    return {
        "stack": [sys.executable, str(HERE / "bare_stack.py"), str(listing), str(out), *shape],
        "fetcher": fetcher_command(
            str(listing), "-o", str(out), "-q", "--per-host", "1000000", *shape
        ),
    }


def row(
    root: Path, port: int, spec: tuple[str, int, str, int, int], repeat: int, pages_in: Path
) -> str:
    name, pages, prefix, threads, processes = spec
    listing = root / f"{name}-{pages}.txt"
    listing.write_text(
        "".join(f"http://127.0.0.1:{port}{prefix}/p/{i}.html\n" for i in range(pages))
    )
    times: dict[str, list[float]] = {"stack": [], "fetcher": []}
    outs = []
    # round -1 is not timed: it takes the first hit of whatever the row before left
    # (on a disk, seconds of the file system freeing its files after they are deleted).
    # Which tool goes first alternates from round to round, so that what remains of it
    # falls on both tools alike.
    for round_ in range(-1, repeat):
        for tool in sorted(times, reverse=round_ % 2 == 1):
            out = pages_in / f"out-{tool}-{round_}"
            command = commands(listing, out, threads, processes)[tool]
            # what the runs before wrote goes to disk now, not during this run, and no
            # folder is deleted until the row is done: on this machine's disk the system
            # time a new file costs swings up to 50-fold from one minute to the next (seen
            # right after thousands of files were deleted, and at other times)
            os.sync()
            elapsed, code, _ = measured(command)
            outs.append(out)
            if code != 0:
                sys.exit(f"{tool} exited {code}: {' '.join(command)}")
            if round_ >= 0:
                times[tool].append(elapsed)
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)
    stack, fetcher = median(times["stack"]), median(times["fetcher"])
    shape = f"-p {processes} -t {threads}" if processes else f"-t {threads}"
    return (
        f"| {name}, `{shape}` | {pages} | {pages / stack:,.0f} | {pages / fetcher:,.0f} "
        f"| {stack / fetcher:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default="static,latency,single")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the pages go")
    options = parser.parse_args()
    only = set(options.only.split(","))
    with workdir() as root, nginx(root) as ports:
        make_site(root, max(10, int(5000 * options.scale)))
        where = f", saved in {options.out_dir}" if options.out_dir else ""
        print(
            f"median of {options.repeat} interleaved runs after an untimed one, "
            f"pages of ~20 kB from nginx{where}"
        )
        print("| workload | pages | stack pages/s | fetcher pages/s | fetcher / stack |")
        print("|---|---:|---:|---:|---:|")
        for name, pages, prefix, threads, processes in ROWS:
            if name in only:
                spec = (name, max(10, int(pages * options.scale)), prefix, threads, processes)
                pages_in = options.out_dir or root
                print(row(root, ports["http"], spec, options.repeat, pages_in), flush=True)


if __name__ == "__main__":
    main()
