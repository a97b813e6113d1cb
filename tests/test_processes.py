"""Behaviour only a real process shows: streaming stdin, signals, the lock, dying workers."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetcher.errors import ExitCode
from fetcher.settings import Settings
from tests.conftest import cli_env, invoke, run_cli, start_cli

POOLS = [["--threads", "4"], ["--processes", "2", "--threads", "2"]]


start = start_cli


def feed(run: subprocess.Popen[str], text: str) -> None:
    """Write all of stdin and close it (detached, so communicate() leaves it alone)."""
    assert run.stdin
    run.stdin.write(text)
    run.stdin.close()
    run.stdin = None


def read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"nothing within {timeout} s"
    return stream.readline()


def test_fetching_starts_before_input_ends(server, tmp_path) -> None:
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl")
    assert run.stdin and run.stdout
    run.stdin.write(server.url("/page/first") + "\n")
    run.stdin.flush()
    record = json.loads(read_line(run.stdout, timeout=20))  # the producer is still open
    assert record["outcome"] == "fetched"
    feed(run, server.url("/page/second") + "\n")
    assert json.loads(read_line(run.stdout, timeout=20))["url"].endswith("/page/second")
    assert run.wait(timeout=20) == 0


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
@pytest.mark.parametrize("pool", POOLS)
def test_a_record_comes_out_while_every_thread_is_stuck(server, tmp_path, pool) -> None:
    """The main loop is not woken for each record while tasks wait in the pool; it still
    looks often enough that a fast page's record is out long before the slow ones end."""
    urls = [server.url("/page/fast")] + [server.url(f"/slow/8?{i}") for i in range(16)]
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", "--timeout", "20", *pool)
    assert run.stdout
    feed(run, "\n".join(urls) + "\n")
    record = json.loads(read_line(run.stdout, timeout=20))
    # counted from the page's answer, not from the start of the command and of its worker
    # processes, which a loaded machine can stretch past 4 s by itself
    (served,) = server.recorder.times["/page/fast"]
    assert record["url"] == urls[0] and time.monotonic() - served < 4
    run.send_signal(signal.SIGINT)
    time.sleep(0.3)  # two signals sent at once may arrive as one: then the run waits 8 s
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=20)


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
def test_a_slow_host_does_not_take_one_worker_process_for_itself(server, tmp_path) -> None:
    """Tasks come round-robin by host; dealt to the workers every other one, a slow host's
    would all go to one worker while the other idled beside fast pages it could not take."""
    slow = [server.url(f"/slow/2?{i}") for i in range(4)]
    fast = [server.url(f"/page/f{i}").replace("127.0.0.1", "localhost") for i in range(4)]
    result, elapsed = two_workers_of_two_threads(tmp_path, slow + fast, per_host=4)
    assert result.returncode == 0, result.stderr
    # all four at once, as the server saw them (one worker: two, then two when those end)
    spans = [(start, end) for path, start, end in server.recorder.spans if "/slow/" in path]
    assert len(spans) == 4
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert elapsed < 2 + 8  # start-up included, on a loaded machine


def two_workers_of_two_threads(tmp_path, urls: list[str], per_host: int):
    """The run's result (with --jsonl) and how long it took."""
    started = time.monotonic()
    result = run_cli(
        *("-o", str(tmp_path / "out"), "-p", "2", "-t", "2", "--per-host", str(per_host)),
        "--jsonl",
        stdin="\n".join(urls) + "\n",
    )
    return result, time.monotonic() - started


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
def test_tasks_waiting_in_a_stuck_worker_go_to_an_idle_one(server, tmp_path) -> None:
    """A worker holds tasks waiting beside its running ones. The first worker gets both slow
    pages and 24 others; when the second has run out of work, the first gives back those
    it has not started (its threads are stuck), and the second runs them too."""
    slow = [server.url(f"/slow/6?{i}") for i in range(2)]
    others = [server.url(f"/slow/0.1?{i}") for i in range(50)]
    result, elapsed = two_workers_of_two_threads(tmp_path, slow + others, per_host=100)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 52
    # the second worker: 26 pages, then the 24 given back, two at a time (2.5 s); kept by
    # the first worker, those 24 would wait for the slow pages and end after them (6 + 1.2 s)
    spans = server.recorder.spans
    slow_ends = min(end for path, _, end in spans if path.startswith("/slow/6"))
    assert max(end for path, _, end in spans if path.startswith("/slow/0.1")) < slow_ends
    assert elapsed < 6 + 8  # start-up included, on a loaded machine


def wait_for_requests(server, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while server.recorder.total() < count:
        assert time.monotonic() < deadline, "the run did not start fetching"
        time.sleep(0.05)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM)]
)
def test_signal_finishes_in_flight_then_exits(server, tmp_path, pool, signum, code) -> None:
    urls = "".join(server.url(f"/slow/0.5?{i}") + "\n" for i in range(40))
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", *pool)
    feed(run, urls)
    wait_for_requests(server, 4)
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=20)
    assert run.returncode == code, stderr
    finished = [json.loads(line) for line in stdout.splitlines()]
    assert 4 <= len(finished) < 40  # in-flight ones finished; the rest never started
    assert all(r["outcome"] == "fetched" for r in finished)
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    for record in finished:  # saved and complete
        assert (tmp_path / "out" / record["path"]).stat().st_size == record["bytes"]
    assert not list((tmp_path / "out").rglob(".part-*"))


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
@pytest.mark.parametrize("pool", POOLS)
def test_second_signal_stops_at_once(server, tmp_path, pool) -> None:
    run = start("-", "-o", str(tmp_path / "out"), *pool)
    feed(run, "".join(server.url(f"/slow/30?{i}") + "\n" for i in range(4)))
    wait_for_requests(server, 2)
    run.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=10)
    assert run.returncode == ExitCode.SIGINT and time.monotonic() - started < 5
    assert "Traceback" not in stderr


def test_out_dir_in_use_exit_75(server, tmp_path) -> None:
    first = start("-", "-o", str(tmp_path / "out"), "--threads", "1")
    assert first.stdin
    first.stdin.write(server.url("/slow/1") + "\n")  # the lock is held while stdin is open
    first.stdin.flush()
    wait_for_requests(server, 1)
    second = start("-", "-o", str(tmp_path / "out"))
    _, stderr = second.communicate("", timeout=20)
    assert second.returncode == ExitCode.BUSY
    assert f"pid {first.pid}" in stderr and stderr.count("\n") == 1
    feed(first, "")
    assert first.wait(timeout=20) == 0


def children(parent: int) -> dict[int, bytes]:
    """Child processes of any of `parent`'s threads, with their command lines."""
    found = {}
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            with contextlib.suppress(OSError):  # (ended meanwhile)
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes()
    return found


def worker_pids(parent: int) -> list[int]:
    """Worker processes of a run: children of its forkserver (where workers are spawned,
    children of the run: of any of its threads, as a worker that takes a dead one's place
    is started by the pool's relay thread)."""
    pids = []
    for pid, command in children(parent).items():
        if b"multiprocessing.forkserver" in command:
            pids += children(pid)
        elif b"resource_tracker" not in command:
            pids.append(pid)
    return pids


def test_killed_worker_does_not_hang_the_run(server, tmp_path) -> None:
    urls = "".join(server.url(f"/slow/0.5?{i}") + "\n" for i in range(30))
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", "--processes", "2", "--threads", "3")
    feed(run, urls)
    wait_for_requests(server, 6)
    victim = worker_pids(run.pid)[0]
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=60)
    finished = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(r["url"] for r in finished) == sorted(urls.split())  # each exactly once
    assert run.returncode == 0, stderr  # its URLs were retried on the other worker
    seen = server.recorder.counts  # the run lost with the worker counts as an attempt
    assert all(r["attempts"] >= seen[r["url"].split(str(server.port))[1]] for r in finished)
    assert any(r["attempts"] == 2 for r in finished)
    assert "leaked semaphore" not in stderr  # the tracker's clean-up is no error for cron


def test_a_dead_workers_waiting_tasks_are_not_counted_against_them(server, tmp_path) -> None:
    """A worker holds many tasks waiting beside its running ones. When it dies, only those
    it was running count as an attempt (and fail if lost twice); the others go out again
    as if never sent, however many workers die."""
    urls = [server.url(f"/slow/0.5?{i}") for i in range(60)]
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", "-p", "2", "-t", "1")
    feed(run, "\n".join(urls) + "\n")
    for seen in (2, 6):  # every worker killed, twice
        wait_for_requests(server, seen)
        # both in the middle of a request: a task a worker was killed with had reached the
        # server (one killed between starting a task and sending its request loses an
        # attempt the server never saw: fine, but not what the counts below can tell)
        deadline = time.monotonic() + 20
        while server.recorder.in_flight < 2:
            assert time.monotonic() < deadline, "the workers are not both fetching"
            time.sleep(0.01)
        for pid in worker_pids(run.pid):
            os.kill(pid, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=90)
    records = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls)
    counts = server.recorder.counts
    for record in records:
        requested = counts[record["url"].split(str(server.port))[1]]
        assert record["outcome"] == "fetched" or requested >= 2, record
        assert record["attempts"] >= requested
    assert run.returncode in (ExitCode.OK, ExitCode.SOME_FAILED), stderr


def test_workers_killed_while_sending_records_never_hang_the_run(server, tmp_path) -> None:
    """Each worker sends its records through a pipe of its own: one killed in the middle of
    a message garbles nothing but its own pipe, and the others' records still arrive."""
    urls = [server.url(f"/page/k{i}") for i in range(600)]
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", "--processes", "2", "-t", "4")
    feed(run, "\n".join(urls) + "\n")
    wait_for_requests(server, 50)
    for _ in range(4):  # while records stream back as fast as the pages come
        if pids := worker_pids(run.pid):
            os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.1)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode in (ExitCode.OK, ExitCode.SOME_FAILED), stderr
    assert sorted(json.loads(line)["url"] for line in stdout.splitlines()) == sorted(urls)


def test_reader_going_away_exits_141_quietly(server, tmp_path) -> None:
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl")
    feed(run, "".join(server.url(f"/page/{i}") + "\n" for i in range(600)))
    assert run.stdout
    run.stdout.readline()
    run.stdout.close()  # like `| head -1`
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGPIPE
    assert "Traceback" not in stderr and "Exception" not in stderr


def test_disk_full_fails_that_url_and_leaves_no_file(server, tmp_path) -> None:
    import resource

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG, as with ENOSPC, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 2**20, 8 * 2**20))

    urls = [server.url("/page/small"), server.url("/big/10000000"), server.url("/page/other")]
    result = subprocess.run(
        [sys.executable, "-m", "fetcher", "-", "-o", str(tmp_path / "out"), "--jsonl"],
        input="\n".join(urls),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == ExitCode.SOME_FAILED, result.stderr
    by_url = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert by_url[urls[1]]["error"] == "cannot save the page: File too large"
    assert by_url[urls[0]]["outcome"] == by_url[urls[2]]["outcome"] == "fetched"
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and ".fetcher" not in str(p)]
    assert len(files) == 2 and all(p.stat().st_size < 1000 for p in files)  # no partial page


def test_kill_9_leaves_complete_pages_and_a_readable_index(server, tmp_path) -> None:
    """SIGKILL mid-run, then --resume: every page is whole; what the index lists is not
    fetched again, the rest (in flight, or finished moments before the kill and not yet
    committed) at most once more."""
    from tests.server import page_body

    urls = [server.url(f"/slow/0.2?{i}") for i in range(60)]
    out = tmp_path / "out"
    run = start("-", "-o", str(out), "--threads", "4")
    feed(run, "\n".join(urls) + "\n")
    wait_for_requests(server, 12)
    run.kill()
    run.communicate(timeout=20)
    for page in (p for p in out.rglob("*~*") if p.is_file()):
        assert page.read_bytes() == page_body("slow 0.2")  # complete, never partial
    resumed = invoke("-o", str(out), "--resume", "--jsonl", stdin="\n".join(urls) + "\n")
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert len(records) == 60
    skipped = {r["url"] for r in records if r["outcome"] == "skipped"}
    assert len(skipped) >= 4  # the first four finished 0.2 s before the kill at least
    for url in urls:
        fetched = server.recorder.counts[url.removeprefix(server.url(""))]
        assert 1 <= fetched <= (1 if url in skipped else 2), url


@pytest.mark.parametrize("pool", POOLS)
def test_decoding_and_limits_in_both_pools(server, tmp_path, pool) -> None:
    from tests.server import CHARSET_PAGES

    names = sorted(CHARSET_PAGES)
    stdin = "".join(server.url(f"/charset/{n}") + "\n" for n in names)
    stdin += server.url("/gzip-bomb") + "\n" + server.url("/trickle") + "\n"
    out = tmp_path / "out"
    run = run_cli if "--processes" in pool else invoke  # worker processes need a process
    result = run(
        "-o", str(out), "--jsonl", "--max-size", "1M", "--timeout", "1.5", "--retries", "0",
        *pool, stdin=stdin,
    )  # fmt: skip
    by_url = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    for name in names:
        record = by_url[server.url(f"/charset/{name}")]
        text = (out / record["path"]).read_bytes().decode("utf-8")
        assert CHARSET_PAGES[name][2] in text
    assert "larger than --max-size 1048576" in by_url[server.url("/gzip-bomb")]["error"]
    assert "--timeout 1.5 s" in by_url[server.url("/trickle")]["error"]
    assert result.returncode == ExitCode.SOME_FAILED


def forkserver_of(run: int) -> int:
    """The forkserver among a run's children (there is one while it has workers)."""
    (pid,) = [p for p, command in children(run).items() if b"forkserver" in command]
    return pid


def test_workers_are_forks_of_a_forkserver_that_ends_with_the_run(server, tmp_path) -> None:
    """Workers are forked from a process that imported their modules once (not spawned,
    each importing them all again; not forks of the run, which has threads). That server
    has one thread, holds none of the run's streams (a pipe from the run ends when the run
    does), and is gone, reaped, when the run ends; the workers write to the run's own."""
    urls = [server.url(f"/slow/0.5?{i}") for i in range(8)]
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", "-p", "2", "-t", "2")
    assert run.stdin
    run.stdin.write("\n".join(urls) + "\n")
    run.stdin.flush()
    wait_for_requests(server, 2)
    server_pid = forkserver_of(run.pid)
    workers = worker_pids(run.pid)
    assert len(workers) == 2 and set(workers) == set(children(server_pid))
    status = Path(f"/proc/{server_pid}/status").read_text()
    assert "\nThreads:\t1\n" in status
    streams = [os.readlink(f"/proc/{server_pid}/fd/{fd}") for fd in (0, 1, 2)]
    assert streams == [os.devnull] * 3
    mine = [os.readlink(f"/proc/{run.pid}/fd/{fd}") for fd in (1, 2)]
    for worker in workers:
        assert [os.readlink(f"/proc/{worker}/fd/{fd}") for fd in (1, 2)] == mine
    feed(run, "")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert len(stdout.splitlines()) == len(urls)
    for pid in [server_pid, *workers]:
        assert not Path(f"/proc/{pid}").exists(), pid  # ended, and reaped


def test_a_killed_forkserver_costs_no_url(server, tmp_path) -> None:
    """Killed mid-run, the forkserver takes no worker with it; the run ends its workers
    (whose ends it can no longer learn), retries what they ran and starts a new server."""
    urls = "".join(server.url(f"/slow/0.3?{i}") + "\n" for i in range(30))
    run = start("-", "-o", str(tmp_path / "out"), "--jsonl", "-p", "2", "-t", "2")
    feed(run, urls)
    wait_for_requests(server, 4)
    first = forkserver_of(run.pid)
    os.kill(first, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert sorted(json.loads(line)["url"] for line in stdout.splitlines()) == sorted(urls.split())


def run_script(script: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """A caller's program using fetcher, run in its own folder as a user runs it."""
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=script.parent, capture_output=True,
        text=True, env=cli_env(), timeout=60,
    )  # fmt: skip


def test_workers_are_spawned_where_there_is_no_forkserver(server, tmp_path) -> None:
    script = tmp_path / "spawned.py"
    script.write_text(
        "import multiprocessing, os, pathlib, sys\n"
        "import fetcher\n"
        "multiprocessing.get_all_start_methods = lambda: ['fork', 'spawn']\n"
        "if __name__ == '__main__':\n"
        "    records = list(fetcher.fetch(sys.argv[1:], out='out', processes=2, threads=1))\n"
        "    print(sorted(r.outcome for r in records))\n"
    )
    result = run_script(script, [server.url(f"/page/spawned{i}") for i in range(4)])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == str(["fetched"] * 4) + "\n"


def test_library_runs_leave_no_process_behind(server, tmp_path) -> None:
    """fetch(processes=2) twice in one program: after each, no forkserver, no worker; and
    the program ends at once, with nothing on standard error."""
    script = tmp_path / "twice.py"
    script.write_text(
        "import os, pathlib, sys\n"
        "import fetcher\n"
        "def children():\n"
        "    tasks = pathlib.Path(f'/proc/{os.getpid()}/task').iterdir()\n"
        "    pids = [p for t in tasks for p in (t / 'children').read_text().split()]\n"
        "    command = lambda p: pathlib.Path(f'/proc/{p}/cmdline').read_bytes()\n"
        "    return [p for p in pids if b'resource_tracker' not in command(p)]\n"
        "if __name__ == '__main__':\n"
        "    for run in range(2):\n"
        "        records = list(fetcher.fetch(sys.argv[1:], out=f'out{run}', processes=2))\n"
        "        print(len(records), [r.outcome for r in records].count('fetched'), children())\n"
    )
    result = run_script(script, [server.url(f"/page/lib{i}") for i in range(6)])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.splitlines() == ["6 6 []", "6 6 []"]


def test_workers_are_forked_only_on_pythons_the_forkserver_code_was_checked_on(
    monkeypatch,
) -> None:
    """pools/warm.py uses multiprocessing's private forkserver interface: on a Python it was
    not checked against, workers are spawned instead."""
    from fetcher.pools import processes

    settings = Settings(processes=2)
    assert processes._server(settings) is not None  # (this Python: 3.10 to 3.13)
    monkeypatch.setattr(sys, "version_info", (3, 14, 0, "final", 0))
    assert processes._server(settings) is None
