"""--dask against real clusters: a LocalCluster, and `dask scheduler` / `dask worker` processes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fetcher
from fetcher.errors import ExitCode
from tests.conftest import cli_env, run_cli
from tests.server import CHINESE, free_port_refusing, page_body
from tests.test_processes import feed, start, wait_for_requests

distributed = pytest.importorskip("distributed")

# one worker of the suite runs them all, one after another: the module's LocalCluster is
# started once, and two clusters' processes do not compete for the 2 cores
pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A LocalCluster of 2 worker processes on 127.0.0.1; yields the scheduler's address."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as local:
        yield local.scheduler_address


def by_url(records: list) -> dict[str, fetcher.Record]:
    table = {record.url: record for record in records}
    assert len(table) == len(records), "a URL was recorded twice"
    return table


def index_rows(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / ".fetcher" / "index.sqlite3") as db:
        return db.execute("SELECT url, outcome FROM pages").fetchall()


def test_same_records_files_and_index_as_the_thread_pool(server, tmp_path, cluster) -> None:
    good = [server.url(f"/page/p{i}") for i in range(120)]
    bad = [server.url("/status/404"), f"http://127.0.0.1:{free_port_refusing()}/", "ftp://x/"]
    out = tmp_path / "out"
    records = by_url(list(fetcher.fetch(good + bad, out=out, dask=cluster, retries=0)))
    for i, url in enumerate(good):
        record = records[url]
        assert record.outcome == "fetched" and record.encoding == "utf-8"
        assert (out / str(record.path)).read_bytes() == page_body(f"p{i}")
    assert records[bad[0]].error == "HTTP 404 Not Found"
    assert records[bad[1]].error == "connection refused"
    assert records[bad[2]].outcome == "failed"
    assert sorted(index_rows(out)) == sorted((r.url, r.outcome) for r in records.values())
    assert not list(out.rglob(".part-*"))


def test_identical_urls_are_not_merged_by_the_engine(server, tmp_path, cluster) -> None:
    urls = [server.url("/page/same")] * 3
    records = list(fetcher.fetch(urls, out=tmp_path, dask=cluster, dedupe=False))
    assert len(records) == 3 and server.recorder.counts["/page/same"] == 3


def test_retries_limits_and_decoding_on_the_workers(server, tmp_path, cluster) -> None:
    urls = [
        server.url("/flaky/2/503/d"),
        server.url("/charset/gbk-meta"),
        server.url("/gzip-bomb"),
    ]
    records = list(
        fetcher.fetch(urls, out=tmp_path, dask=cluster, backoff=0, max_size=2**20, timeout=5)
    )
    flaky, gbk, bomb = (by_url(records)[url] for url in urls)
    assert flaky.outcome == "fetched" and flaky.attempts == 3
    assert gbk.encoding == "gb18030" and CHINESE in (tmp_path / str(gbk.path)).read_text("utf-8")
    assert bomb.outcome == "failed" and "--max-size" in str(bomb.error)


def test_per_host_and_delay_hold_across_the_cluster(server, tmp_path, cluster) -> None:
    urls = [server.url(f"/slow/0.1?{i}") for i in range(12)]
    list(fetcher.fetch(urls, out=tmp_path / "a", dask=cluster, threads=4, per_host=2))
    assert server.recorder.max_in_flight == 2
    server.recorder.spans.clear()
    urls = [server.url(f"/page/d{i}") for i in range(4)]
    list(fetcher.fetch(urls, out=tmp_path / "b", dask=cluster, threads=4, delay=0.3))
    starts = sorted(start for _, start, _ in server.recorder.spans)
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.3


def test_cli_dask_local_end_to_end(server, tmp_path) -> None:
    urls = [server.url(f"/page/c{i}") for i in range(30)] + [server.url("/status/404")]
    out = tmp_path / "out"
    result = run_cli("-", "-o", str(out), "--dask", "local", "--jsonl", stdin="\n".join(urls))
    assert result.returncode == ExitCode.SOME_FAILED, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls)
    assert "30 fetched, 1 failed" in result.stderr and "Traceback" not in result.stderr


def test_sigint_saves_what_finished_and_exits_130(server, tmp_path) -> None:
    run = start("-", "-o", str(tmp_path / "out"), "--dask", "local", "--threads", "2", "--jsonl")
    feed(run, "".join(server.url(f"/slow/1?{i}") + "\n" for i in range(60)))
    wait_for_requests(server, 4, timeout=60)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == ExitCode.SIGINT, stderr
    finished = [json.loads(line) for line in stdout.splitlines()]
    assert 0 < len(finished) < 60 and all(r["outcome"] == "fetched" for r in finished)
    for record in finished:
        assert (tmp_path / "out" / record["path"]).stat().st_size == record["bytes"]
    assert "stopped by SIGINT" in stderr and "Traceback" not in stderr


def test_without_the_extra_exit_2_with_the_pip_command(tmp_path) -> None:
    hide = "import sys; sys.modules['distributed'] = None; from fetcher.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide, "-", "-o", str(tmp_path), "--dask", "local"],
        input="",
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip() == (
        "fetcher: error: --dask needs distributed: "
        "pip install 'distributed>=2024.8' (the dask extra)"
    )


def test_base_run_does_not_import_distributed(server, tmp_path) -> None:
    code = (
        "import sys, fetcher; list(fetcher.fetch([sys.argv[1]], out=sys.argv[2]));"
        "print('distributed' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, server.url("/page/x"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert result.stdout.strip() == "False", result.stderr


@pytest.fixture
def scheduler(tmp_path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; (address, workers)."""
    info = tmp_path / "scheduler.json"
    common = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [
        subprocess.Popen(
            [*common, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)],
            stderr=subprocess.DEVNULL, env=cli_env(), cwd=tmp_path,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for name in ("w1", "w2"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--host", "127.0.0.1", "--nthreads", "2", "--no-dashboard",
                     "--name", name, "--local-directory", str(tmp_path / name)],
                    stderr=subprocess.DEVNULL, env=cli_env(), cwd=tmp_path,
                )
            )  # fmt: skip
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, procs[1:]
    finally:
        # the workers first, while their scheduler still answers: a worker whose scheduler
        # has gone away spends 8 s trying to reach it before it ends
        for group in (procs[1:], procs[:1]):
            for proc in group:
                proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_connects_by_address_and_ships_its_code(server, tmp_path, scheduler) -> None:
    address, _ = scheduler
    urls = "\n".join(server.url(f"/page/a{i}") for i in range(20))
    out = tmp_path / "out"
    result = run_cli("-", "-o", str(out), "--dask", address, stdin=urls)
    assert result.returncode == 0, result.stderr
    assert len(index_rows(out)) == 20
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", env)
        records = list(fetcher.fetch([server.url("/page/env")], out=out, dask="env"))
    assert records[0].outcome == "fetched"
    with distributed.Client(address, timeout=30) as client:
        where = client.run(lambda: sys.modules["fetcher"].__file__)
    assert all("fetcher_code.zip" in str(path) for path in where.values()), where


def test_a_killed_worker_loses_no_url_and_records_none_twice(server, tmp_path, scheduler) -> None:
    address, _ = scheduler
    urls = [server.url(f"/slow/0.5?{i}") for i in range(40)]
    out = tmp_path / "out"
    run = start("-", "-o", str(out), "--dask", address, "--threads", "4", "--jsonl")
    feed(run, "\n".join(urls) + "\n")
    wait_for_requests(server, 6, timeout=60)
    with distributed.Client(address, timeout=30) as client:
        pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls)  # each exactly once
    assert all(r["outcome"] == "fetched" for r in records)
    assert len(index_rows(out)) == 40
