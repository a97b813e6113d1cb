"""fetcher against its peers on local servers: every workload of issue #5, one command.

    python bench/run.py [--repeat 3] [--only latency,throughput,https,memory,startup]
                        [--scale 1.0]

Starts nginx on 127.0.0.1 (static ~20 kB pages over HTTP and HTTPS with a self-signed
certificate; the same pages after 50 ms, standing in for network latency; tiny pages at any
path), then runs each tool on the same URL list at the same concurrency, `--repeat` times
interleaved, and prints medians, pages/s and the ratio to fetcher's best, with each target.
`--scale 0.1` runs a tenth of the pages, for a quick look.

Peers: wget2 (--max-threads), curl (--parallel --parallel-max), an aiohttp script with one
session, and the naive `multiprocessing.dummy.Pool(n).map(requests.get, urls)`. Everything
but the naive Pool.map saves every page. A peer that is not installed is reported as skipped:
apt-get install nginx-light libnginx-mod-http-echo wget2 curl; pip install aiohttp.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fetcher_command, make_site, measured, median, nginx, workdir

HERE = Path(__file__).resolve().parent
Make = Callable[[Path, Path], list[str]]
DASK = "fetcher --dask local (2 workers) -t {half}"


@dataclass
class Workload:
    name: str
    pages: int
    concurrency: int
    prefix: str = ""  # "/slow" for the delayed pages
    https: bool = False
    target: str = ""
    judge: Callable[[Workload, dict[str, float]], str] | None = None
    tools: list[str] = field(default_factory=list)


def fetcher_tools(n: int, ca: Path | None) -> dict[str, list[str]]:
    """fetcher's configurations at concurrency n: threads, and 2 processes x n/2 threads."""
    # no per-host limit, as the peers have none (under --dask a URL counts as in flight from
    # its chunk's dispatch, so a limit of n would hold it to fewer chunks than it needs)
    common = ["-q", "--per-host", "1000000"] + (["--ca-bundle", str(ca)] if ca else [])
    half = str(max(1, n // 2))
    configs = {
        f"fetcher -t {n}": ["--threads", str(n)],
        f"fetcher -p 2 -t {half}": ["--processes", "2", "--threads", half],
    }
    if importlib.util.find_spec("distributed"):
        configs[DASK.format(half=half)] = ["--dask", "local", "--threads", half]
    return {name: [*args, *common] for name, args in configs.items()}


def tools(n: int, ca: Path | None) -> dict[str, Make | None]:
    """Every tool at concurrency n; None where it is not installed."""
    made: dict[str, Make | None] = {
        name: (lambda urls, out, a=args: fetcher_command(str(urls), "-o", str(out), *a))
        for name, args in fetcher_tools(n, ca).items()
    }
    tls_wget = [f"--ca-certificate={ca}"] if ca else []
    tls_curl = ["--cacert", str(ca)] if ca else []
    made["wget2 --max-threads"] = (
        (
            lambda urls, out: [
                "wget2",
                "-q",
                "--max-threads",
                str(n),
                "-i",
                str(urls),
                "-P",
                str(out),
                *tls_wget,
            ]
        )
        if shutil.which("wget2")
        else None
    )
    made["curl --parallel"] = (
        (
            lambda urls, out: [
                "curl",
                "-sf",
                "--parallel",
                "--parallel-max",
                str(n),
                *tls_curl,
                "-K",
                str(_curl_config(urls, out)),
            ]
        )
        if shutil.which("curl")
        else None
    )
    made["aiohttp, one session"] = (
        (
            lambda urls, out: [
                sys.executable,
                str(HERE / "aiohttp_peer.py"),
                str(urls),
                str(out),
                str(n),
            ]
        )
        if importlib.util.find_spec("aiohttp")
        else None
    )
    made["naive Pool.map(requests.get)"] = lambda urls, out: [
        sys.executable, str(HERE / "naive_peer.py"), str(urls), str(n)
    ]  # fmt: skip
    return made


def _curl_config(urls: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{out.name}.curl"
    lines = [
        f'url = "{u}"\noutput = "{out}/{i}.html"' for i, u in enumerate(urls.read_text().split())
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def _best_fetcher(times: dict[str, float]) -> tuple[str, float]:
    return min(((n, t) for n, t in times.items() if n.startswith("fetcher")), key=lambda x: x[1])


def judge_latency(work: Workload, times: dict[str, float]) -> str:
    ideal = work.pages * 0.05 / work.concurrency
    name, best = _best_fetcher(times)
    wget = times.get("wget2 --max-threads")
    verdict = f"{name}: {best:.2f} s = {best / ideal:.2f} x ideal ({ideal:.2f} s)"
    verdict += " — met" if best <= 1.10 * ideal else " — MISSED (target 1.10 x)"
    if wget is not None:
        verdict += f"; {wget / best:.2f} x wget2's speed"
        verdict += " — met" if best <= wget else " — MISSED"
    threads = times.get(f"fetcher -t {work.concurrency}")
    dask = times.get(DASK.format(half=work.concurrency // 2))
    if threads and dask:
        verdict += f"; --dask local at {threads / dask:.2f} x the thread pool's pages/s"
        verdict += " — met (>= 0.8)" if threads / dask >= 0.8 else " — MISSED (target 0.8)"
    return verdict


def judge_against(work: Workload, times: dict[str, float], naive_factor: float = 0) -> str:
    name, best = _best_fetcher(times)
    parts = [f"{name}: {work.pages / best:.0f} pages/s"]
    aio = times.get("aiohttp, one session")
    if aio is not None:
        ok = best <= aio
        parts.append(f"{aio / best:.2f} x aiohttp's speed — {'met' if ok else 'MISSED'}")
    naive = times.get("naive Pool.map(requests.get)")
    if naive_factor and naive is not None:
        ok = naive / best >= naive_factor
        parts.append(f"{naive / best:.1f} x the naive Pool.map — {'met' if ok else 'MISSED'}")
    return "; ".join(parts)


def workloads(scale: float) -> list[Workload]:
    def pages(n: int) -> int:
        return max(10, int(n * scale))

    return [
        Workload(
            "latency", pages(5000), 128, prefix="/slow",
            target="wall time <= 1.10 x ideal (pages x 50 ms / 128), no slower than wget2;"
            " --dask local >= 0.8 x the thread pool's pages/s",
            judge=judge_latency,
        ),
        Workload(
            "throughput", pages(5000), 8,
            target="pages/s >= the aiohttp script", judge=judge_against,
        ),
        Workload(
            "https", pages(2000), 8, https=True,
            target="pages/s >= the aiohttp script; >= 30 x the naive Pool.map",
            judge=lambda w, t: judge_against(w, t, naive_factor=30),
        ),
    ]  # fmt: skip


def run_workload(work: Workload, root: Path, ports: dict[str, int], repeat: int) -> None:
    ca = root / "cert.pem" if work.https else None
    scheme, port = ("https", ports["https"]) if work.https else ("http", ports["http"])
    listing = root / f"{work.name}.txt"
    listing.write_text(
        "".join(f"{scheme}://127.0.0.1:{port}{work.prefix}/p/{i}.html\n" for i in range(work.pages))
    )
    env = {"BENCH_CA_BUNDLE": str(ca), "REQUESTS_CA_BUNDLE": str(ca)} if ca else {}
    made = tools(work.concurrency, ca)
    runs: dict[str, list[float]] = {name: [] for name, make in made.items() if make}
    for round_ in range(repeat):
        for name in runs:
            out = root / f"out-{work.name}-{round_}-{len(runs[name])}"
            command = made[name](listing, out)  # type: ignore[misc]
            elapsed, code, _ = measured(command, env=env)
            shutil.rmtree(out, ignore_errors=True)
            if code != 0:
                print(f"  ! {name} exited {code}: {' '.join(command)}", file=sys.stderr)
                continue
            runs[name].append(elapsed)
    times = {name: median(values) for name, values in runs.items() if values}
    _table(work, made, times, repeat)


def _table(
    work: Workload, made: dict[str, Make | None], times: dict[str, float], repeat: int
) -> None:
    source = "after 50 ms" if work.prefix else ("over TLS" if work.https else "no delay")
    print(
        f"\n## {work.name}: {work.pages} pages of ~20 kB from nginx ({source}), "
        f"concurrency {work.concurrency}, median of {repeat} interleaved runs"
    )
    best = _best_fetcher(times)[1] if any(n.startswith("fetcher") for n in times) else None
    print(f"| {'tool':<34} | {'seconds':>8} | {'pages/s':>8} | {'speed vs fetcher best':>22} |")
    print(f"|{'-' * 36}|{'-' * 10}:|{'-' * 10}:|{'-' * 24}:|")
    for name, make in made.items():
        if name not in times:
            why = "not installed" if make is None else "failed"
            print(f"| {name:<34} | {why:>8} | {'':>8} | {'':>22} |")
            continue
        value = times[name]
        ratio = f"{best / value:.2f} x" if best else "-"
        print(f"| {name:<34} | {value:>8.2f} | {work.pages / value:>8.0f} | {ratio:>22} |")
    if work.judge and best:
        print(f"target: {work.target}\nresult: {work.judge(work, times)}")


def run_memory(root: Path, ports: dict[str, int], scale: float) -> None:
    """Peak RSS of fetcher (one process, threads) on 5,000 vs 50,000 tiny pages."""
    print("\n## memory: peak RSS of `fetcher -t 8` (one process) on tiny pages")
    print(f"| {'pages':>8} | {'seconds':>8} | {'peak RSS':>10} |")
    print(f"|{'-' * 9}:|{'-' * 9}:|{'-' * 11}:|")
    peaks = []
    for count in (max(10, int(5000 * scale)), max(100, int(50_000 * scale))):
        urls = "".join(f"http://127.0.0.1:{ports['http']}/tiny/{i}\n" for i in range(count))
        out = root / f"out-memory-{count}"
        elapsed, code, peak = measured(
            fetcher_command("-", "-o", str(out), "-q", "--threads", "8"), stdin=urls
        )
        shutil.rmtree(out, ignore_errors=True)
        if code != 0:
            sys.exit(f"fetcher exited {code} on {count} tiny pages")
        peaks.append(peak)
        print(f"| {count:>8} | {elapsed:>8.2f} | {peak / 1e6:>7.1f} MB |")
    ratio = peaks[1] / peaks[0]
    ok = ratio <= 1.25 and peaks[1] <= 120e6
    print(
        "target: peak RSS at 50,000 <= 1.25 x at 5,000, and <= 120 MB\n"
        f"result: {ratio:.2f} x, {peaks[1] / 1e6:.1f} MB — {'met' if ok else 'MISSED'}"
    )


def run_startup(root: Path, ports: dict[str, int], repeat: int) -> None:
    """Start-up: the interpreter alone, `fetcher --version`, a run of one URL."""
    url = f"http://127.0.0.1:{ports['http']}/p/0.html\n"
    commands = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "fetcher --version": (fetcher_command("--version"), None),
        "fetcher, 1 URL": (fetcher_command("-", "-o", str(root / "out-startup"), "-q"), url),
        "fetcher -p 2, 1 URL": (
            fetcher_command("-", "-o", str(root / "out-startup-p"), "-q", "-p", "2"),
            url,
        ),
    }
    print(f"\n## start-up: median of {max(5, repeat)} runs")
    print(f"| {'command':<22} | {'seconds':>8} | {'peak RSS':>10} |")
    print(f"|{'-' * 24}|{'-' * 9}:|{'-' * 11}:|")
    for name, (command, stdin) in commands.items():
        results = [measured(command, stdin=stdin) for _ in range(max(5, repeat))]
        if any(code != 0 for _, code, _ in results):
            sys.exit(f"{name} failed")
        seconds = median([r[0] for r in results])
        peak = median([r[2] for r in results])
        print(f"| {name:<22} | {seconds:>8.3f} | {peak / 1e6:>7.1f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default="latency,throughput,https,memory,startup")
    options = parser.parse_args()
    only = set(options.only.split(","))
    with workdir() as root, nginx(root, tls=True) as ports:
        make_site(root, max(10, int(5000 * options.scale)))
        for work in workloads(options.scale):
            if work.name in only:
                run_workload(work, root, ports, options.repeat)
        if "memory" in only:
            run_memory(root, ports, options.scale)
        if "startup" in only:
            run_startup(root, ports, options.repeat)


if __name__ == "__main__":
    main()
