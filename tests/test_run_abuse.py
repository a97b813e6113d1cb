"""The run around the fetches, abused as cron and attackers abuse it: real subprocesses where
signals, closed descriptors, memory or a fresh process matter; in-process runs elsewhere."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, invoke, run_cli_peak, start_cli

start = start_cli


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_stdin_is_idle_ends_cleanly(server, tmp_path, signum, code) -> None:
    for attempt in range(3):  # it used to abort (exit 134) every time
        run = start("-", "-q", "-o", str(tmp_path / str(attempt)))
        assert run.stdin is not None
        run.stdin.write(server.url("/page/idle") + "\n")
        run.stdin.flush()  # and then nothing more: the reader waits on stdin
        deadline = time.monotonic() + 20
        while server.recorder.total() <= attempt:  # the page is fetched: the run is up
            assert time.monotonic() < deadline, "the run did not start fetching"
            time.sleep(0.05)
        time.sleep(0.3)  # its record written, the reader back on stdin
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=30)
        assert run.returncode == code, stderr
        assert "Fatal Python error" not in stderr


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_of_the_parent_leaves_no_worker_behind(server, tmp_path) -> None:
    run = start("-", "-q", "-p", "2", "-o", str(tmp_path))
    assert run.stdin is not None
    run.stdin.write(server.url("/slow/20") + "\n")
    run.stdin.flush()
    deadline = time.monotonic() + 20
    while len(children := _children(run.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # two workers and multiprocessing's resource tracker
    assert len(children) >= 2
    run.kill()
    run.wait()
    deadline = time.monotonic() + 5  # each worker looks at its parent every 0.5 s
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if _alive(pid)] == []


@pytest.mark.xdist_group("timing")  # measures memory: never beside another such test
def test_a_huge_line_costs_neither_memory_nor_the_next_url(server, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    with listing.open("wb") as out:
        out.write(b"http://example.invalid/" + b"a" * (50 * 1024 * 1024) + b"\n")
        out.write(server.url("/page/after").encode() + b"\n")
    result, peak_kib = run_cli_peak(str(listing), "--jsonl", "-q", "-o", str(tmp_path / "out"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["outcome"] for r in records] == ["failed", "fetched"]
    assert "line is 52428823 bytes long" in records[0]["error"]
    assert records[0]["url"].endswith("…") and len(records[0]["url"]) < 300
    assert len(result.stdout) < 10_000 and peak_kib < 150 * 1024


def test_a_byte_order_mark_is_not_part_of_the_first_url(server, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + server.url("/page/bom").encode() + b"\r\n")
    result = invoke(str(listing), "--jsonl", "-q", "-o", str(tmp_path / "out"))
    assert json.loads(result.stdout)["outcome"] == "fetched" and result.returncode == 0


def test_a_secret_in_a_malformed_url_is_never_written(server, tmp_path) -> None:
    out = tmp_path / "out"
    lines = ["http://user:topsecret@[::1/bad", server.url("/page/fine")]
    result = invoke("--jsonl", "-o", str(out), stdin="\n".join(lines) + "\n")
    assert result.returncode == 1
    assert "topsecret" not in result.stdout + result.stderr
    assert "http://***@[::1/bad" in result.stdout
    with sqlite3.connect(out / ".fetcher" / "index.sqlite3") as index:
        dump = "\n".join(index.iterdump())
    assert "topsecret" not in dump and "***@" in dump
    assert not any("topsecret" in str(path) for path in out.rglob("*"))


def _run_with(closed: int | None = None, stdout: object = subprocess.PIPE, *args: str):
    return subprocess.run(
        [sys.executable, "-m", "fetcher", *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE if closed != 2 else subprocess.DEVNULL,
        preexec_fn=(lambda: os.close(closed)) if closed is not None else None,
        env=cli_env(),
        timeout=60,
        text=True,
    )


def test_a_closed_stderr_costs_nothing_and_never_reaches_stdout(server, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(server.url("/page/a") + "\nftp://bad/\n")
    result = _run_with(2, subprocess.PIPE, str(listing), "--jsonl", "-o", str(tmp_path / "o"))
    assert result.returncode == 1
    outcomes = sorted(json.loads(line)["outcome"] for line in result.stdout.splitlines())
    assert outcomes == ["failed", "fetched"]
    unusable = tmp_path / "file"
    unusable.write_text("")
    result = _run_with(2, subprocess.PIPE, str(listing), "-o", str(unusable / "o"))
    assert result.returncode == 2 and result.stdout == ""


@pytest.mark.parametrize("target", ["closed", "/dev/full"])
def test_records_that_cannot_be_written_stop_the_run_with_74(server, tmp_path, target) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(server.url("/page/a") + "\n")
    out = tmp_path / "o"
    if target == "closed":
        result = _run_with(1, None, str(listing), "--jsonl", "-o", str(out))
    else:
        with open(target, "w") as full:
            result = _run_with(None, full, str(listing), "--jsonl", "-o", str(out))
    assert result.returncode == 74
    assert "cannot write records to standard output" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    with sqlite3.connect(out / ".fetcher" / "index.sqlite3") as index:
        assert index.execute("SELECT outcome FROM pages").fetchall() == [("fetched",)]


@pytest.mark.parametrize(("page", "code"), [("/page/a", 74), ("/status/404", 3)])
def test_an_unwritable_summary_json_does_not_hide_the_result(server, tmp_path, page, code) -> None:
    result = invoke(
        "-o", str(tmp_path / "o"), "--summary-json", "/proc/version", stdin=server.url(page) + "\n"
    )
    assert result.returncode == code
    assert "cannot write --summary-json /proc/version" in result.stderr


def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.write_text("precious")
    (out / ".fetcher").mkdir(parents=True)
    (out / ".fetcher" / "lock").symlink_to(victim)
    result = invoke("-o", str(out), stdin="")
    assert result.returncode == 2 and "symbolic link" in result.stderr
    assert victim.read_text() == "precious"


def test_a_planted_index_link_is_refused(tmp_path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.sqlite3"
    (out / ".fetcher").mkdir(parents=True)
    (out / ".fetcher" / "index.sqlite3").symlink_to(victim)
    result = invoke("-o", str(out), stdin="")
    assert result.returncode == 2 and "symbolic link" in result.stderr
    assert not victim.exists()


def test_a_planted_host_folder_link_fails_the_page_not_the_target(server, tmp_path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / f"127.0.0.1_{server.port}").symlink_to(elsewhere, target_is_directory=True)
    result = invoke("--jsonl", "-o", str(out), stdin=server.url("/page/a") + "\n")
    record = json.loads(result.stdout)
    assert record["outcome"] == "failed" and "symbolic link" in record["error"]
    assert list(elsewhere.iterdir()) == []


def test_a_planted_temporary_name_is_passed_over(tmp_path) -> None:
    """Temporary names are `.part-PID-THREAD-N`, N counting from 0 in each process: in a
    fresh process the first five are planted as links to a file outside."""
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.write_text("precious")
    (out / "h").mkdir(parents=True)
    code = (
        "import os, sys, threading\n"
        "from pathlib import Path\n"
        "from fetcher.store import save\n"
        "out, victim = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "for n in range(5):\n"
        "    name = f'.part-{os.getpid()}-{threading.get_ident()}-{n}'\n"
        "    (out / 'h' / name).symlink_to(victim)\n"
        "save(out, 'h/page~x.html', b'the page')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(out), str(victim)], check=True, env=cli_env())
    assert (out / "h" / "page~x.html").read_bytes() == b"the page"
    assert victim.read_text() == "precious"
    assert len(list((out / "h").glob(".part-*"))) == 5  # the planted links, untouched


def test_a_host_name_of_253_characters_is_saved(server, tmp_path) -> None:
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    env = {**cli_env(), "http_proxy": server.url("")}  # the proxy answers for any host
    result = subprocess.run(
        [sys.executable, "-m", "fetcher", "--jsonl", "-o", str(tmp_path)],
        input=f"http://{host}:8080/page/long\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    record = json.loads(result.stdout)
    assert record["outcome"] == "fetched", record["error"]
    folder = record["path"].split("/")[0]
    assert len(folder.encode()) <= 130 and folder.endswith("_8080")
    assert (tmp_path / record["path"]).is_file()


def test_a_damaged_index_is_one_line_with_the_way_out(server, tmp_path) -> None:
    out = tmp_path / "out"
    urls = "".join(server.url(f"/page/{i}") + "\n" for i in range(300))
    assert invoke("-o", str(out), "-q", stdin=urls).returncode == 0
    index = out / ".fetcher" / "index.sqlite3"
    data = bytearray(index.read_bytes())
    for offset in range(4096, len(data), 8192):  # damage inner pages, keep the header
        data[offset : offset + 512] = b"\xa5" * 512
    index.write_bytes(data)
    pages = sorted(p for p in out.rglob("*.html"))
    result = invoke("-o", str(out), "--resume", stdin=urls)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is damaged" in result.stderr and f"mv {index} {index}.damaged" in result.stderr
    assert sorted(p for p in out.rglob("*.html")) == pages  # nothing lost
    index.rename(index.with_name("index.sqlite3.damaged"))
    assert invoke("-o", str(out), "--resume", "-q", stdin=urls).returncode == 0


LEAKY_LINES = [
    "http:\\\\user:S3CRET1@127.0.0.1:9/",
    "http:/\\user:S3CRET2@127.0.0.1:9/",
    "http:///user:S3CRET3@127.0.0.1:9/",
    "http:user:S3CRET4@127.0.0.1:9/",
    "http://user:S3C#RET5@127.0.0.1:9/",
    "http://user:S3C/RET6@127.0.0.1:9/",
    "http://user:S3CRET7@127\uff0e0.0.1:9/",
    "http://user:S3CRET8@127.0.0.1:9\uff03/",
    '"http://user:S3CRET9@127.0.0.1:9/"',
    "GET http://user:S3CRET10@127.0.0.1:9/ HTTP/1.1",
    "\ufeffhttp://user:S3CRET11@127.0.0.1:9/",
    "http://user:S3CRET12" + "x" * 40_000 + "@127.0.0.1:9/",
    "http://localhost:9#S3CRET13@127.0.0.1/a",  # valid: a fragment, or a password with "#"?
    "http://127.0.0.1:9/c?next=http://bob:S3CRET14@127.0.0.1/x",  # another URL's
]


def test_no_line_leaks_its_password(tmp_path) -> None:
    out = tmp_path / "out"
    listing = tmp_path / "urls.txt"
    listing.write_text("# first\n" + "\n".join(LEAKY_LINES) + "\n", encoding="utf-8")
    result = invoke(str(listing), "--jsonl", "-o", str(out))
    assert result.returncode == 3
    with sqlite3.connect(out / ".fetcher" / "index.sqlite3") as index:
        dump = "\n".join(index.iterdump())
    for where in (result.stdout, result.stderr, dump):
        assert "S3C" not in where and "RET" not in where


def test_a_byte_order_mark_before_a_huge_first_line_fetches_nothing(server, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + server.url("/page/").encode() + b"a" * 40_000 + b"\n")
    result = invoke(str(listing), "--jsonl", "-o", str(tmp_path / "out"))
    record = json.loads(result.stdout)
    assert record["outcome"] == "failed" and record["url"].endswith("…")
    assert server.recorder.total() == 0


def test_a_folder_swapped_for_a_link_mid_run_is_not_followed(tmp_path) -> None:
    from fetcher import store

    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    out.mkdir()
    store.save(out, "h/sub/one~a.html", b"1")
    store.save(out, "h/sub/two~b.html", b"2")  # the folder is known by now
    (out / "h" / "sub").rename(tmp_path / "moved")
    (out / "h" / "sub").symlink_to(victim, target_is_directory=True)
    with pytest.raises(OSError, match="symbolic link"):
        store.save(out, "h/sub/three~c.html", b"3")
    assert list(victim.iterdir()) == []


def test_a_closed_stdin_is_bad_usage(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fetcher", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(0),
        env=cli_env(),
        timeout=60,
    )
    assert result.returncode == 2 and "standard input is closed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.xdist_group("timing")  # measures time: never beside another such test
@pytest.mark.parametrize("delay", [0.15, 0.25, 0.35])
def test_ctrl_c_while_starting_is_quiet(tmp_path, delay) -> None:
    run = start("-", "-o", str(tmp_path))
    time.sleep(delay)  # inside the imports of requests, typer and the rest
    # as far into its start as `delay` takes it on an idle machine: on a loaded one the
    # interpreter may not have reached fetcher's first line yet, where nothing can catch it
    deadline = time.monotonic() + 2
    while _cpu_seconds(run.pid) < 0.8 * delay and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 130 and "Traceback" not in stderr


@pytest.mark.parametrize("side", ["-wal", "-shm"])
def test_a_link_beside_the_index_is_named(tmp_path, side) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    (out / ".fetcher").mkdir(parents=True)
    (out / ".fetcher" / f"index.sqlite3{side}").symlink_to(victim)
    result = invoke("-o", str(out), stdin="")
    assert result.returncode == 2 and f"index.sqlite3{side} is a symbolic link" in result.stderr
    assert not victim.exists()


def test_an_index_damaged_at_its_header_gets_the_way_out_too(tmp_path) -> None:
    out = tmp_path / "out"
    assert invoke("-o", str(out), stdin="").returncode == 0
    index = out / ".fetcher" / "index.sqlite3"
    index.write_bytes(b"\x00" * 16 + index.read_bytes()[16:])
    result = invoke("-o", str(out), stdin="")
    assert result.returncode == 2 and f"mv {index} {index}.damaged" in result.stderr


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "temporary name"])
def test_a_page_is_written_whole_both_ways(tmp_path, monkeypatch, unnamed) -> None:
    """Where the file system has O_TMPFILE a page is written with no name and named when
    whole; elsewhere under a temporary name, renamed. Both make new pages, replace old ones
    (a re-run), replace a link planted at the page's name rather than write through it,
    and leave no temporary name behind."""
    from fetcher.store import pages as store

    if not unnamed:
        monkeypatch.setattr(store, "_UNNAMED", None)
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.write_text("precious")
    store.save(out, "h/p/new~a.html", b"first")
    store.save(out, "h/p/new~a.html", b"second, longer")
    (out / "h" / "p" / "linked~b.html").symlink_to(victim)
    store.save(out, "h/p/linked~b.html", b"the page")
    assert (out / "h" / "p" / "new~a.html").read_bytes() == b"second, longer"
    assert (out / "h" / "p" / "linked~b.html").read_bytes() == b"the page"
    assert not (out / "h" / "p" / "linked~b.html").is_symlink()
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in (out / "h" / "p").iterdir()) == ["linked~b.html", "new~a.html"]


def test_an_unnamed_file_that_cannot_be_named_takes_the_classic_way(tmp_path, monkeypatch):
    """Where O_TMPFILE works but naming the file through /proc/self/fd is refused (a
    sandbox may forbid it), the page is written again under a temporary name."""
    from fetcher.store import pages as store

    real_link = os.link

    def refusing(source, *args, **kwargs):
        if str(source).startswith("/proc/self/fd/"):
            raise PermissionError(errno.EPERM, "refused")
        return real_link(source, *args, **kwargs)

    monkeypatch.setattr(store.os, "link", refusing)
    store.save(tmp_path, "h/page~a.html", b"the page")
    assert (tmp_path / "h" / "page~a.html").read_bytes() == b"the page"
    assert [p.name for p in (tmp_path / "h").iterdir()] == ["page~a.html"]
