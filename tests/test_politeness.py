"""--per-host, --delay and Retry-After pauses, in both pools, measured at the server."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time

import pytest

import fetcher
import fetcher.pools
from fetcher.politeness import HostGate, HostQueues, host_of
from fetcher.pools.base import CONTEXT
from tests import gatelog
from tests.conftest import cli_env, invoke, run_cli
from tests.server import FaultServer

POOLS = [["--threads", "8"], ["--processes", "2", "--threads", "4"]]

# concurrency and the spacing of requests measured at the server: on one worker of the
# suite, never beside another test that measures (CONTRIBUTING.md, "Tests in parallel")
pytestmark = pytest.mark.xdist_group("timing")


def fetcher_for(pool: list[str]):
    """The command in-process, or as a process where worker processes are asked for."""
    return run_cli if "--processes" in pool else invoke


def most_overlapping(spans: list[tuple[str, float, float]]) -> int:
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("limit", [1, 3])
def test_per_host_limit(server, tmp_path, pool, limit) -> None:
    urls = "".join(server.url(f"/slow/0.1?{i}") + "\n" for i in range(24))
    result = fetcher_for(pool)(
        "-o", str(tmp_path / "out"), "--per-host", str(limit), *pool, stdin=urls
    )
    assert result.returncode == 0, result.stderr
    assert server.recorder.max_in_flight == limit


@pytest.mark.parametrize("pool", POOLS)
def test_delay_spaces_every_start_retries_included(server, tmp_path, pool, monkeypatch) -> None:
    """--delay 0.3 between every two requests to the host, retries included: the gate's own
    moments (tests/gatelog.py) are exact, and every request the server saw went out in its
    own turn. The server's stamps alone are not enough: each carries its thread's wake-up
    (the first request of a run is often stamped 20 ms after it left), which shortens the
    gap after it by as much: a gap 4 ms short of 0.3 was seen under load."""
    urls = [server.url(f"/page/d{i}") for i in range(5)] + [server.url("/flaky/2/503/d")]
    args = ["-o", str(tmp_path / "out"), "--delay", "0.3", *pool]
    log = tmp_path / "gate.log"
    monkeypatch.setenv(gatelog.LOG, str(log))
    if "--processes" in pool:  # worker processes: the gate goes to them pickled, logging
        command = [sys.executable, "-c", gatelog.COMMAND, *args]
        env = {**cli_env(), gatelog.LOG: str(log)}
        result = subprocess.run(
            command, input="\n".join(urls), capture_output=True, text=True, env=env, timeout=60
        )
    else:
        monkeypatch.setattr(fetcher.pools, "HostGate", gatelog.LoggingGate)
        result = invoke(*args, stdin="\n".join(urls))
    assert result.returncode == 0, result.stderr
    arrived = sorted(start for _, start, _ in server.recorder.spans)
    claimed, sent = gatelog.read(log)
    # 5 pages + the flaky one's 3 attempts, each through the gate, each seen by the server
    assert len(arrived) == len(claimed) == len(sent) == 8
    # each request left, and reached the server, in its own turn: after its claim, before
    # the next (a stamp up to 0.3 s late still falls in its turn)
    turns = list(itertools.pairwise([*claimed, float("inf")]))
    for (claim, next_claim), left, seen in zip(turns, sent, arrived, strict=True):
        assert claim <= left < next_claim and claim < seen < next_claim, (claimed, sent, arrived)
    # the gate: no attempt started sooner than 0.3 s after the request before it left
    waits = [after - before for before, after in zip(sent[:-1], claimed[1:], strict=True)]
    assert min(waits) >= 0.3, waits
    # at the server, each gap is at least 0.3 less how late the server stamped the first of
    # the two (its thread's wake-up, measured, not guessed)
    late = [max(0.0, seen - left) for seen, left in zip(arrived, sent, strict=True)]
    gaps = [b - a for a, b in itertools.pairwise(arrived)]
    assert all(gap >= 0.3 - lag for gap, lag in zip(gaps, late[:-1], strict=True)), (gaps, late)


def test_a_busy_host_does_not_hold_up_the_others(tmp_path) -> None:
    with FaultServer(host="127.0.0.2") as slow, FaultServer(host="127.0.0.3") as quick:
        urls = [slow.url(f"/slow/0.5?{i}") for i in range(10_000)]
        urls += [quick.url(f"/page/q{i}") for i in range(100)]
        started = time.monotonic()
        records = fetcher.fetch(urls, out=tmp_path, threads=8, per_host=1, backoff=0)
        quick_done = 0
        for record in records:
            quick_done += record.url.startswith(quick.url(""))
            if quick_done == 100:
                break
        elapsed = time.monotonic() - started
        records.close()
    assert elapsed < 10, elapsed  # the slow host alone needs 10,000 x 0.5 s
    assert slow.recorder.max_in_flight == 1


@pytest.mark.parametrize("pool", POOLS)
def test_retry_after_slows_the_whole_host(server, tmp_path, pool) -> None:
    urls = [server.url("/retry-after/1/429")] + [server.url(f"/slow/0.2?{i}") for i in range(20)]
    result = fetcher_for(pool)(
        "-o", str(tmp_path / "out"), "--retries", "0", "--jsonl", *pool, stdin="\n".join(urls)
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(r["outcome"] == "fetched" for r in records) == 20
    spans = server.recorder.spans
    refused_at = next(end for path, _, end in spans if path.startswith("/retry-after"))
    # requests already past the host's gate when the 429 was answered cannot be recalled: on
    # a loaded machine the client may read the 429 a while after it was sent. Unthrottled,
    # 8 threads would start the last of the 20 pages 0.4 s after the 429
    later = [span for span in spans if span[1] > refused_at + 0.25]
    assert later and all(start >= refused_at + 0.95 for _, start, _ in later)
    assert most_overlapping(later) == 1  # throttled: one at a time for the rest of the run


def test_host_key() -> None:
    assert host_of("http://User:pw@Example.COM:8080/x") == "example.com"
    assert host_of("https://[::1]/") == "::1"


def test_queues_round_robin_and_limits() -> None:
    queues = HostQueues(per_host=1, delay=0.0, gate=HostGate(CONTEXT, 0.0))
    for i in range(3):
        queues.add("a", f"a{i}")
    queues.add("b", "b0")
    first, _ = queues.pop_ready(0.0)
    second, _ = queues.pop_ready(0.0)
    third, wake = queues.pop_ready(0.0)
    assert (first, second, third, wake) == ("a0", "b0", None, float("inf"))
    queues.finished("a")
    assert queues.pop_ready(0.0)[0] == "a1" and len(queues) == 1


@pytest.mark.parametrize("pool", POOLS)
def test_a_delay_range_spaces_starts_at_random_within_it(server, tmp_path, pool) -> None:
    urls = [server.url(f"/page/r{i}") for i in range(6)]
    result = fetcher_for(pool)(
        "-o", str(tmp_path / "out"), "--delay", "0.2-0.4", *pool, stdin="\n".join(urls)
    )
    assert result.returncode == 0, result.stderr
    starts = sorted(start for _, start, _ in server.recorder.spans)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 5 and min(gaps) >= 0.2, gaps
    assert max(gaps) < 0.4 + 1.0, gaps  # a loaded machine may add to a gap, never take from it


def test_the_gate_draws_each_gap_from_the_range() -> None:
    gate = HostGate(None, (0.2, 0.4))
    draws = [gate.draw() for _ in range(200)]
    assert all(0.2 <= d <= 0.4 for d in draws) and max(draws) - min(draws) > 0.1
    assert HostGate(None, 0.3).draw() == 0.3  # a single number stays exact


def test_a_crawl_delay_floor_spaces_the_next_start_too() -> None:
    gate, slept = HostGate(None, 0.0), []
    gate.wait_turn("h")
    gate.end_turn("h")
    gate.set_floor("h", 0.2)
    gate.wait_turn("h", sleep=lambda s: (slept.append(s), time.sleep(s)))
    gate.end_turn("h")
    assert slept and sum(slept) >= 0.15


def test_each_gap_is_drawn_floored_and_counted_from_the_send() -> None:
    """--delay A-B draws each gap, a Crawl-delay floors it, and it runs from the moment the
    request left (HostGate.sent), not from the claimed turn."""
    gate, draws = HostGate(None, (0.1, 0.3)), iter([0.1, 0.3, 0.1])
    gate.draw = lambda: next(draws)  # type: ignore[method-assign]
    gate.set_floor("h", 0.2)
    gaps = []
    for _ in range(3):
        gate.wait_turn("h")
        if gaps:
            gaps[-1] = time.monotonic() - gaps[-1]
        time.sleep(0.15)  # a new connection's set-up, say: the gap is not yet running
        gate.sent("h")
        gaps.append(time.monotonic())
        gate.end_turn("h")
    assert gaps[0] >= 0.2 and gaps[1] >= 0.3  # the floor over a draw of 0.1; a draw of 0.3


@pytest.mark.parametrize(
    ("text", "delay"), [("2", 2.0), ("0.5", 0.5), ("1-3", (1.0, 3.0)), ("2-2", 2.0)]
)
def test_delay_reads_a_number_or_a_range(text, delay) -> None:
    from fetcher.politeness import parse_delay

    assert parse_delay(text) == delay


@pytest.mark.parametrize("text", ["3-1", "abc", "-1", "1-", "nan"])
def test_a_bad_delay_is_bad_usage(tmp_path, text) -> None:
    result = invoke("--delay", text, "-o", str(tmp_path / "o"), stdin="")
    assert result.returncode == 2 and "--delay" in result.stderr, result.stderr


def test_on_a_cluster_the_dispatcher_draws_each_hosts_wait_from_the_range() -> None:
    gate = HostGate(None, (0.2, 0.4))
    queues = HostQueues(per_host=None, delay=(0.2, 0.4), gate=gate, remote=True)
    waits = []
    for host in (f"h{i}" for i in range(50)):
        queues.add(host, "task")
        assert queues.pop_ready(time.monotonic())[0] == "task"
        queues.finished(host)  # remote: the wait counts from the end of the task
        waits.append(queues.next_dispatch[host] - time.monotonic())
    assert all(0.1 < w <= 0.4 for w in waits), waits
    assert max(waits) - min(waits) > 0.05  # drawn, not fixed
