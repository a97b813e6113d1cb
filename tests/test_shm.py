"""Where /dev/shm is read-only (some containers), a run of threads works, and --processes,
which needs it for the semaphores and shared memory of its workers, stops with one line.

Each test runs fetcher as a real process in a mount namespace of its own (`unshare -m`)
with a read-only tmpfs over /dev/shm; where that is not permitted (no root, no unshare,
a seccomp profile), the tests skip and say why."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fetcher.errors import ExitCode
from tests.conftest import cli_env

# the mount is private to the namespace (unshare's default propagation): the host's /dev/shm
# is left as it is
READ_ONLY_SHM = 'mount -t tmpfs -o ro tmpfs /dev/shm && exec "$@"'


@functools.cache
def why_not_read_only_shm() -> str | None:
    """Why a read-only /dev/shm cannot be made for a child here, or None if it can."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    writes = "! touch /dev/shm/probe 2>/dev/null"  # fails, as it should, on a read-only mount
    probe = ["unshare", "-m", "sh", "-c", READ_ONLY_SHM, "sh", "sh", "-c", writes]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"unshare: {exc}"
    if result.returncode != 0:
        return f"a read-only tmpfs cannot be mounted on /dev/shm here: {result.stderr.strip()}"
    return None


def run_without_shm(*args: str, mount: str = READ_ONLY_SHM) -> subprocess.CompletedProcess[str]:
    """`fetcher ARGS` as a real process that sees a read-only /dev/shm (or what `mount`
    makes of it)."""
    if (reason := why_not_read_only_shm()) is not None:
        pytest.skip(reason)
    command = ["unshare", "-m", "sh", "-c", mount, "sh"]
    return subprocess.run(
        [*command, sys.executable, "-m", "fetcher", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )


@pytest.mark.parametrize("pool", [[], ["-p", "0"], ["-t", "4", "--delay", "0.01"]])
def test_a_run_of_threads_needs_no_dev_shm(server, tmp_path: Path, pool: list[str]) -> None:
    out = tmp_path / "out"
    urls = [server.url("/page/one"), server.url("/page/two")]
    result = run_without_shm(*urls, "-o", str(out), "--jsonl", *pool)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["url"] for r in records) == sorted(urls)
    for record in records:
        assert record["outcome"] == "fetched"
        saved = out / record["path"]
        assert saved.stat().st_size == record["bytes"] > 0
    assert server.recorder.counts["/page/one"] == server.recorder.counts["/page/two"] == 1


def test_processes_without_dev_shm_is_one_line_of_bad_usage(server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_without_shm(server.url("/page/one"), "-o", str(out), "--processes", "2")
    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith("fetcher: error: --processes needs /dev/shm")
    assert "not writable here (Read-only file system)" in line
    assert line.endswith("a run of threads does not need it: -p 0, or no -p")
    # refused before anything was touched or fetched
    assert not out.exists()
    assert server.recorder.counts["/page/one"] == 0


# writable, with room for a semaphore and a block of shared memory, not for all a run makes
# there (the host gate's 64 semaphores and tables, the workers' queues)
SMALL_SHM = 'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$@"'


@pytest.mark.parametrize("size", ["64k", "600k"])
def test_processes_with_too_small_a_dev_shm_is_one_line_of_bad_usage(
    server, tmp_path: Path, size: str
) -> None:
    """A container's /dev/shm can be writable and small: --processes is then bad usage,
    refused before the out dir is touched, as where it is read-only (it was an internal
    error, exit 70, "please report it", with the out dir made: the gate's semaphores, or a
    worker's queue, found no room after the one-semaphore probe had)."""
    out = tmp_path / "out"
    url = server.url("/page/one")
    mount = SMALL_SHM.format(size=size)
    result = run_without_shm(url, "-o", str(out), "-p", "2", "-t", "2", mount=mount)
    assert result.returncode == ExitCode.USAGE, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("fetcher: error: --processes needs /dev/shm")
    assert "(No space left on device)" in line
    assert not out.exists()
    assert server.recorder.counts["/page/one"] == 0


# a private, writable /dev/shm; `timeout -s KILL` (a cron job's guard) kills the run's whole
# process group at the deadline, multiprocessing's resource tracker with it; then what is
# left in /dev/shm is listed
KILLED_BY_TIMEOUT = (
    'mount -t tmpfs tmpfs /dev/shm && { timeout -s KILL 4 "$@"; sleep 1; ls -A /dev/shm; }'
)


@pytest.mark.xfail(
    strict=True,
    reason="a --processes run killed with its process group (timeout -s KILL, a cgroup's OOM"
    " kill) leaves its host gate's named semaphores (64 and more) in /dev/shm for good: spawned"
    " workers open them by name, so they cannot be unlinked while the run may start a worker,"
    " and only the resource tracker, killed with the group, would have removed them",
)
def test_a_processes_run_killed_with_its_group_leaves_no_semaphores(server, tmp_path) -> None:
    urls = "".join(server.url(f"/slow/30?{i}") + "\n" for i in range(4))
    (tmp_path / "urls.txt").write_text(urls)
    args = [str(tmp_path / "urls.txt"), "-p", "2", "-t", "2", "-q", "-o", str(tmp_path / "o")]
    result = run_without_shm(*args, mount=KILLED_BY_TIMEOUT)
    left = result.stdout.split()
    assert left == [], f"{len(left)} files left in /dev/shm, e.g. {left[:3]}"
