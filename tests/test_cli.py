"""The command as users run it, stdout and stderr apart: run whole in-process on a fake
Environment, and as a real process where only a process will do (worker processes, exits)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fetcher.errors import ExitCode
from fetcher.pools import KINDS
from fetcher.report import Summary, processes_worth_it
from tests.conftest import cli_env, invoke, run_cli
from tests.server import FaultServer, free_port_refusing, page_body

GOOD = 300


def site(
    server: FaultServer, tmp_path: Path, bad: bool = True
) -> tuple[Path, list[str], list[str]]:
    good = [server.url(f"/page/p{i}") for i in range(GOOD)]
    failing = [server.url(f"/status/404?n={i}") for i in range(5)]
    failing += [f"http://127.0.0.1:{free_port_refusing()}/refused{i}" for i in range(3)]
    failing += ["ftp://example.com/file", "not a url"]
    urls = good + (failing if bad else [])
    listing = tmp_path / "urls.txt"
    listing.write_text("# the test site\n\n" + "\n".join(urls) + "\n")
    return listing, good, failing if bad else []


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def check_run(result, out: Path, good: list[str], failing: list[str]) -> None:
    assert result.returncode == ExitCode.SOME_FAILED, result.stderr
    by_url = {r["url"]: r for r in records(result.stdout)}
    assert len(by_url) == len(good) + len(failing)
    for i, url in enumerate(good):
        record = by_url[url]
        assert record["outcome"] == "fetched" and record["status"] == 200
        saved = (out / record["path"]).read_bytes()
        assert saved == page_body(f"p{i}")
        assert record["sha256"] == hashlib.sha256(saved).hexdigest()
        assert record["bytes"] == len(saved) and record["encoding"] == "utf-8"
    for url in failing:
        assert by_url[url]["outcome"] == "failed" and by_url[url]["error"]
    assert f"{len(good) + len(failing)} URLs" in result.stderr
    assert f"{len(good)} fetched, {len(failing)} failed" in result.stderr


@pytest.mark.parametrize("pool", [["--threads", "8"], ["--processes", "2", "--threads", "4"]])
def test_site_with_failures(server, tmp_path, pool) -> None:
    listing, good, failing = site(server, tmp_path)
    out = tmp_path / "out"
    run = run_cli if "--processes" in pool else invoke  # worker processes need a process
    result = run(str(listing), "-o", str(out), "--jsonl", "--retries", "0", *pool)
    check_run(result, out, good, failing)


def test_site_from_stdin(server, tmp_path) -> None:
    listing, good, failing = site(server, tmp_path)
    out = tmp_path / "out"
    result = invoke("-", "-o", str(out), "--jsonl", "--retries", "0", stdin=listing.read_text())
    check_run(result, out, good, failing)
    assert "stdin line" in json.dumps(records(result.stdout))


def test_good_urls_only_exit_0_and_stdout_empty(server, tmp_path) -> None:
    listing, good, _ = site(server, tmp_path, bad=False)
    result = invoke(str(listing), "-o", str(tmp_path / "out"))
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == ""
    assert f"{len(good)} fetched, 0 failed" in result.stderr


def test_all_failed_exit_3(tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"http://127.0.0.1:{free_port_refusing()}/\nftp://x/\n")
    result = invoke(str(listing), "-o", str(tmp_path / "out"), "--retries", "0")
    assert result.returncode == ExitCode.ALL_FAILED
    assert "connection refused" in result.stderr


def test_empty_list_exit_0(tmp_path) -> None:
    result = invoke("-o", str(tmp_path / "out"), "--jsonl", stdin="# nothing\n\n")
    assert (result.returncode, result.stdout) == (0, "")
    assert "0 URLs" in result.stderr


def test_bad_line_names_file_and_line(server, tmp_path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{server.url('/page/a')}\njavascript:void(0)\n")
    result = invoke(str(listing), "-o", str(tmp_path / "out"), "--jsonl")
    failed = [r for r in records(result.stdout) if r["outcome"] == "failed"]
    assert failed[0]["error"] == (
        f"unsupported scheme 'javascript': only http and https are fetched ({listing} line 2)"
    )
    assert result.returncode == ExitCode.SOME_FAILED


def test_duplicates_fetched_once_unless_no_dedupe(server, tmp_path) -> None:
    url = server.url("/page/dup")
    result = invoke("-o", str(tmp_path / "out"), "--jsonl", stdin=f"{url}\n{url}\n {url} \n")
    assert len(records(result.stdout)) == 1
    result = invoke("-o", str(tmp_path / "out"), "--jsonl", "--no-dedupe", stdin=f"{url}\n{url}\n")
    assert len(records(result.stdout)) == 2


def test_record_keys_and_redaction(server, tmp_path) -> None:
    url = server.url("/page/k").replace("http://", "http://alice:hunter2@")
    summary = tmp_path / "summary.json"
    result = invoke(
        "-o", str(tmp_path / "out"), "--jsonl", "--summary-json", str(summary), stdin=url + "\n"
    )
    (record,) = records(result.stdout)
    assert list(record)[:12] == [
        "url",
        "outcome",
        "final_url",
        "status",
        "path",
        "bytes",
        "sha256",
        "content_type",
        "encoding",
        "attempts",
        "elapsed",
        "error",
    ]
    assert record["url"] == url.replace("alice:hunter2", "***")
    everything = result.stdout + result.stderr + summary.read_text()
    everything += (tmp_path / "out/.fetcher/index.sqlite3").read_bytes().decode("latin-1")
    everything += "\n".join(str(p) for p in (tmp_path / "out").rglob("*"))
    assert "hunter2" not in everything


def test_summary_json(server, tmp_path) -> None:
    summary = tmp_path / "s.json"
    stdin = f"{server.url('/page/a')}\n{server.url('/status/404')}\n"
    result = invoke("-o", str(tmp_path / "out"), "-q", "--summary-json", str(summary), stdin=stdin)
    assert result.stderr == ""  # -q: no summary
    data = json.loads(summary.read_text())
    assert data["outcomes"] == {
        "fetched": 1, "not_modified": 0, "fresh": 0, "skipped": 0, "disallowed": 0, "failed": 1
    }  # fmt: skip
    assert data["statuses"] == {"200": 1, "404": 1}
    assert data["errors"][0]["reason"].startswith("HTTP 404")
    assert data["errors"][0]["example"] == server.url("/status/404")
    assert data["exit_code"] == 1 and data["bytes"] == len(page_body("a"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "0"], "--threads"),
        (["--max-size", "banana"], "'banana' is not a size"),
        (["--no-such-option"], "No such option"),
        (["missing-file.txt"], "cannot read URL file missing-file.txt"),
        (["-H", "no colon"], "is not a header"),
        (["--ca-bundle", "/no/such.pem"], "--ca-bundle"),
        (["--timeout", "-1"], "--timeout"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message) -> None:
    result = invoke(*args, "-o", str(tmp_path / "out"), stdin="", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert result.stderr.startswith("fetcher: error: ") and result.stdout == ""


def test_out_dir_not_writable_exit_2(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("-o", str(blocker / "out"), stdin="")
    assert result.returncode == ExitCode.USAGE
    assert "cannot use out dir" in result.stderr and result.stderr.count("\n") == 1


def test_version() -> None:
    from fetcher import __version__

    result = invoke("--version")
    assert (result.returncode, result.stdout) == (0, f"fetcher {__version__}\n")


def test_help_has_an_example() -> None:
    result = invoke("--help")
    assert result.returncode == 0 and "fetcher urls.txt --threads 5 --out pages/" in result.stdout


def test_progress_bar_on_request(server, tmp_path) -> None:
    result = invoke("-o", str(tmp_path / "out"), "--progress", stdin=server.url("/page/a") + "\n")
    assert "1/1" in result.stderr and "url/s" in result.stderr
    quiet = invoke("-o", str(tmp_path / "out"), stdin=server.url("/page/a") + "\n")
    assert "url/s" not in quiet.stderr  # stderr is not a terminal: no bar by default


def test_terminals_get_the_hint_and_the_bar(server, tmp_path) -> None:
    """What the Environment says of its streams is what counts: on terminals, the hint for
    typing URLs and the progress bar, unasked."""
    result = invoke("-o", str(tmp_path / "out"), stdin=server.url("/page/a") + "\n", terminal=True)
    assert result.returncode == 0
    assert result.stderr.startswith("fetcher: reading URLs from the terminal")
    assert "1/1" in result.stderr and "url/s" in result.stderr


@pytest.mark.parametrize(
    ("cpu", "elapsed", "backend", "cores", "suggested"),
    [
        (19.0, 20.0, "threads", 2, 2),  # a core busy throughout: one process per core
        (5.0, 20.0, "threads", 4, 0),  # waiting on the network: processes would not help
        (19.0, 20.0, "processes", 2, 0),  # already
        (19.0, 20.0, "dask", 2, 0),
        (19.0, 20.0, "threads", 1, 0),  # no other core to use
        (4.8, 5.0, "threads", 4, 0),  # over before worker processes would have started
    ],
)
def test_when_worker_processes_are_suggested(cpu, elapsed, backend, cores, suggested) -> None:
    assert processes_worth_it(cpu, elapsed, KINDS[backend], cores) == suggested


def test_the_summary_says_when_worker_processes_may_help() -> None:
    summary = Summary()
    summary.finish()
    assert not any("--processes" in line for line in summary.lines())
    summary.processes_hint = 2
    assert any("--processes 2 may be faster" in line for line in summary.lines())


EMBEDDED = """
import atexit, sys
from fetcher.cli import main
atexit.register(lambda: print("exit handler ran", flush=True))
try:
    main(sys.argv[1:])
except SystemExit as exc:
    print(f"main said {exc.code}; the script goes on", flush=True)
finally:
    print("finally ran", flush=True)
"""


def test_main_called_from_a_script_returns_to_it(server, tmp_path) -> None:
    """`fetcher.cli.main()` ends as any exit does, with SystemExit: the calling script's
    `except`, `finally` and exit handlers run. Only the console script, whose process is
    fetcher's own, leaves without the interpreter's teardown."""
    command = [sys.executable, "-c", EMBEDDED, server.url("/page/a"), "-o", str(tmp_path), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "main said 0; the script goes on",
        "finally ran",
        "exit handler ran",
    ]


LEAVING = """
import atexit, sys, threading, time
from pathlib import Path
from fetcher.errors import leave
atexit.register(lambda: print("exit handler ran"))  # not flushed: leave() must flush it
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), Path(sys.argv[2]).touch())).start()
print("buffered", end="")
leave(3)
"""


@pytest.mark.parametrize("thread", [False, True])
def test_leaving_runs_exit_handlers_flushes_and_waits_for_threads(tmp_path, thread) -> None:
    """How fetcher's own processes end: exit handlers run and output is flushed before the
    fast exit, and while a non-daemon thread runs, the process waits for it as any exit."""
    flag = tmp_path / "thread finished"
    command = [sys.executable, "-c", LEAVING, "thread" if thread else "-", str(flag)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=cli_env())
    assert result.returncode == 3, result.stderr
    assert result.stdout == "bufferedexit handler ran\n"
    assert flag.exists() == thread
