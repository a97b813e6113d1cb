"""Cron re-runs on 2,000 local pages (nginx): first run, --refresh re-run, --resume re-run.

    python bench/rerun.py [--pages 2000] [--threads 8] [--repeat 3]

Prints each run's median wall time, the ratios to the first run, and the requests nginx saw.
Targets (issue #4): refresh ≤ 0.5 x first run, every page not_modified; resume ≤ 0.2 x first
run with no request at all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fetcher_command, make_site, median, nginx, requests_logged, timed, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--processes", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with workdir() as root, nginx(root) as ports:
        paths = make_site(root, options.pages)
        urls = "".join(f"http://127.0.0.1:{ports['http']}{p}\n" for p in paths)
        out = root / "out"
        base = ["-", "-o", str(out), "-q", "--threads", str(options.threads)]
        base += ["--processes", str(options.processes)]
        times: dict[str, list[float]] = {"first": [], "refresh": [], "resume": []}
        seen: dict[str, int] = {}
        for _ in range(options.repeat):
            shutil.rmtree(out, ignore_errors=True)
            for name, extra in (
                ("first", []),
                ("refresh", ["--refresh"]),
                ("resume", ["--resume"]),
            ):
                before = requests_logged(root)
                elapsed, code = timed(fetcher_command(*base, *extra), urls)
                assert code == 0, f"{name} run exited {code}"
                times[name].append(elapsed)
                seen[name] = requests_logged(root) - before
        outcomes = _outcomes([*base, "--refresh", "--jsonl"], urls)
        first = median(times["first"])
        print(
            f"{options.pages} pages of ~20 kB from nginx, --threads {options.threads}, "
            f"--processes {options.processes}, median of {options.repeat}"
        )
        print(f"{'run':<10}{'seconds':>10}{'x first':>10}{'requests':>10}")
        for name in times:
            value = median(times[name])
            print(f"{name:<10}{value:>10.2f}{value / first:>10.2f}{seen[name]:>10}")
        print(f"refresh outcomes: {outcomes}")


def _outcomes(args: list[str], urls: str) -> dict[str, int]:
    result = subprocess.run(fetcher_command(*args), input=urls, text=True, capture_output=True)
    counts: dict[str, int] = {}
    for line in result.stdout.splitlines():
        outcome = json.loads(line)["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


if __name__ == "__main__":
    main()
