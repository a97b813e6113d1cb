"""What fetcher says on standard error, for a cron job's log and for people with wget and curl
habits (issue 25): a line per failed URL when stderr is a log, -q silent, -v a line per URL,
hints that know wget's and curl's options, the summary's wording, a stop that says what is
left and how to finish it."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetcher.errors import ExitCode
from fetcher.hints import out_problem, resume_command, url_meant
from fetcher.inputs import Source, expected_count
from fetcher.records import Record, failed
from fetcher.report import Summary, url_line
from tests.conftest import ROOT, cli_env, invoke, start_cli
from tests.server import free_port_refusing

FAILED = re.compile(r"^fetcher: failed: (\S+): (.+)$", re.MULTILINE)


def failing_list(server, tmp_path: Path) -> tuple[Path, list[str]]:
    """Two good URLs and four that fail: two 404s, a refused connection, a line that is no URL."""
    failing = [server.url("/status/404?n=1"), server.url("/status/404?n=2")]
    failing += [f"http://127.0.0.1:{free_port_refusing()}/refused", "not a url"]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join([server.url("/page/a"), *failing, server.url("/page/b")]) + "\n")
    return listing, failing


@pytest.mark.parametrize("page", ["README.md", "docs/cron.md"])
def test_the_documented_crontab_line_logs_every_failed_url(server, tmp_path, page) -> None:
    """The crontab line of README and cron.md, run by a shell as cron runs it (stderr appended
    to a file): the log names each failed URL with its reason, then the summary; cron is not
    mailed."""
    (line,) = [x for x in (ROOT / page).read_text().splitlines() if "17 3 * * *" in x]
    command = line.split("&&", 1)[1].strip()
    fetcher = shlex.join([sys.executable, "-m", "fetcher"])
    command = command.replace("/opt/fetcher/.venv/bin/fetcher", fetcher)
    _, failing = failing_list(server, tmp_path)
    done = subprocess.run(
        ["sh", "-c", command], cwd=tmp_path, env=cli_env(), timeout=120, capture_output=True
    )
    log = (tmp_path / "fetcher.log").read_text()
    assert done.returncode == 0 and done.stdout == b"", log  # `|| [ $? -eq 1 ]`
    logged = dict(FAILED.findall(log))
    assert sorted(logged) == sorted(u for u in failing if u != "not a url"), log
    assert "HTTP 404" in logged[failing[0]] and "refused" in logged[failing[2]]
    assert "fetcher: failed: not a url: " in log
    assert log.index("fetcher: failed:") < log.index("fetcher: 6 URLs in")
    assert json.loads((tmp_path / "last-run.json").read_text())["outcomes"]["failed"] == 4


def test_failure_lines_masked_escaped_and_with_jsonl_too(server, tmp_path) -> None:
    secret = server.url("/status/404").replace("http://", "http://alice:hunter2@")
    stdin = f"{secret}\nnot a url \x1b[31mred\n{server.url('/page/a')}\n"
    for extra in ([], ["--jsonl"]):  # records on stdout do not take the log's lines away
        result = invoke("-o", str(tmp_path / "o"), "--retries", "0", *extra, stdin=stdin)
        lines = [x for x in result.stderr.splitlines() if x.startswith("fetcher: failed:")]
        assert len(lines) == 2, result.stderr
        assert "hunter2" not in result.stderr
        assert any(x.startswith("fetcher: failed: http://***@127.0.0.1") for x in lines)
        assert "\x1b" not in result.stderr
        assert "fetcher: failed: not a url \\x1b[31mred: " in "\n".join(lines)
        assert "page/a" not in "".join(lines)


def test_on_a_terminal_no_failure_lines_unless_verbose(server, tmp_path) -> None:
    stdin = f"{server.url('/status/404')}\n{server.url('/page/a')}\n"
    result = invoke("-o", str(tmp_path / "o"), "--no-progress", stdin=stdin, terminal=True)
    assert "fetcher: failed:" not in result.stderr and "2 URLs in" in result.stderr
    result = invoke("-o", str(tmp_path / "o"), "-v", "--no-progress", stdin=stdin, terminal=True)
    assert "fetcher: failed: " + server.url("/status/404") in result.stderr


def test_verbose_gives_a_line_per_url_whatever_its_outcome(server, tmp_path) -> None:
    urls = [server.url("/page/a"), server.url("/status/404"), server.url("/page/b")]
    result = invoke("-o", str(tmp_path / "o"), "-v", "--retries", "0", stdin="\n".join(urls))
    assert re.search(rf"^fetcher: fetched: {re.escape(urls[0])} \(200, ", result.stderr, re.M)
    assert f"fetcher: fetched: {urls[2]} (200, " in result.stderr
    assert result.stderr.count(f"fetcher: failed: {urls[1]}: HTTP 404") == 1  # one line, not two
    again = invoke("-o", str(tmp_path / "o"), "--verbose", "--resume", stdin=urls[0])
    assert f"fetcher: skipped: {urls[0]}\n" in again.stderr


@pytest.mark.parametrize("terminal", [False, True])
def test_quiet_is_silent_even_with_progress(server, tmp_path, terminal) -> None:
    """-q wins, as wget -q and curl -s: no bar (even asked for), no hint, no lines, no summary."""
    stdin = f"{server.url('/status/404')}\n{server.url('/page/a')}\n"
    for args in (["-q"], ["-q", "--progress"], ["-q", "-v"]):
        result = invoke("-o", str(tmp_path / "o"), *args, stdin=stdin, terminal=terminal)
        assert (result.returncode, result.stderr) == (ExitCode.SOME_FAILED, "")


def test_fatal_errors_still_show_with_quiet(tmp_path) -> None:
    result = invoke("-q", str(tmp_path / "missing.txt"))
    assert result.returncode == ExitCode.USAGE and "cannot read URL file" in result.stderr


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--wait=1", "wget --wait is fetcher's --delay SECONDS"),
        ("--random-wait", "--delay"),
        ("--tries=3", "wget --tries is fetcher's --retries N"),
        ("--timestamping", "fetcher's --refresh"),
        ("-N", "wget -N is fetcher's --refresh"),
        ("--max-redirs=3", "curl --max-redirs is fetcher's --max-redirect N"),
        ("--continue", "--resume"),
        ("-c", "--resume"),
        ("-U", "fetcher's -A, --user-agent"),
        ("-O", "fetcher has no single output file"),
        ("--output-document=x.html", "fetcher has no single output file"),
        ("--limit-rate=10k", "wget and curl --limit-rate has no equivalent"),
        ("--spider", "wget --spider has no equivalent"),
        ("-P", "fetcher's -o, --out DIR"),
        ("--directory-prefix=x", "fetcher's -o, --out DIR"),
        ("--no-check-certificate", "fetcher's --insecure"),
        ("-k", "fetcher's --insecure"),
        ("--cacert=x.pem", "fetcher's --ca-bundle PATH"),
        ("-x", "fetcher's --proxy URL"),
        ("-b", "fetcher's --cookies FILE"),
        ("--load-cookies=c.txt", "fetcher's --cookies FILE"),
        ("-s", "fetcher's -q, --quiet"),
        ("--silent", "fetcher's -q, --quiet"),
        ("-j", "fetcher's -t, --threads N"),
        ("--max-concurrent-downloads=4", "fetcher's -t, --threads N"),
    ],
)
def test_options_of_wget_and_curl_name_fetchers_equivalent(option, says) -> None:
    result = invoke(option, "http://127.0.0.1:9/")
    assert result.returncode == ExitCode.USAGE
    assert says in result.stderr and "Possible options" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_other_unknown_options_still_get_the_nearest_spelling() -> None:
    result = invoke("--retires", "2")
    assert result.returncode == ExitCode.USAGE and "--retries" in result.stderr


@pytest.mark.parametrize("ours", ["--user-agent", "--delay", "--insecure", "-v"])
def test_options_of_the_same_name_are_ours(ours) -> None:
    assert "No such option" not in invoke(ours, "x", "--help").stderr


def test_a_bare_host_suggests_its_url(tmp_path) -> None:
    result = invoke("example.com", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert "cannot read URL file example.com" in result.stderr
    assert "a URL needs its scheme: https://example.com/" in result.stderr


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("example.com", "https://example.com/"),
        ("www.example.org/a/b?c", "https://www.example.org/a/b?c"),
        ("localhost.localdomain:8080", "https://localhost.localdomain:8080/"),
        ("urls.txt", None),  # a list that is missing, not a site
        ("list.csv", None),
        ("urls", None),
        ("./example.com", None),
    ],
)
def test_url_meant(name, meant) -> None:
    assert url_meant(name) == meant


def test_out_dash_is_bad_usage(tmp_path) -> None:
    result = invoke("-o", "-", "http://127.0.0.1:9/", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE and "--jsonl" in result.stderr
    assert "pages cannot go to standard output" in result.stderr
    assert not (tmp_path / "-").exists()


def test_out_with_a_file_name_is_bad_usage_unless_the_folder_exists(server, tmp_path) -> None:
    result = invoke("-o", "page.html", server.url("/page/a"), cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE and not (tmp_path / "page.html").exists()
    assert "looks like a file's name, but --out takes a folder" in result.stderr
    assert "mkdir page.html" in result.stderr
    (tmp_path / "page.html").mkdir()
    assert invoke("-o", "page.html", server.url("/page/a"), cwd=tmp_path).returncode == 0
    assert out_problem(Path("pages")) is None and out_problem(Path("site.org")) is None


def test_per_host_advice_only_when_per_host_held_threads_idle(server, tmp_path) -> None:
    """--per-host 1 --delay 0.3 on pages that take 0.1 s: --delay is the limit, and raising
    --per-host would change nothing, so the summary does not advise it."""
    urls = "".join(server.url(f"/slow/0.1?n={i}") + "\n" for i in range(6))
    summary = tmp_path / "summary.json"
    result = invoke(
        "-t", "4", "--per-host", "1", "--delay", "0.3", "--summary-json", str(summary),
        "-o", str(tmp_path / "o"), stdin=urls,
    )  # fmt: skip
    assert result.returncode == 0 and "--per-host" not in result.stderr, result.stderr
    assert json.loads(summary.read_text())["idle_by_per_host"] < 0.05


def test_summary_wording_one_url_and_no_zero_rate() -> None:
    summary = Summary()
    summary.add(failed("http://127.0.0.1:9/", "connection refused"))
    summary.finish()
    first = summary.lines()[0]
    assert first.startswith("fetcher: 1 URL in ") and "pages/s" not in first
    summary.add(Record(url="http://x/", outcome="fetched", status=200, attempts=1))
    assert "2 URLs in" in summary.lines()[0] and "pages/s)" in summary.lines()[0]


def test_url_line_escapes_control_characters() -> None:
    line = url_line(failed("http://x/\x1b[2J", "HTTP 500\r"))
    assert line == "fetcher: failed: http://x/\\x1b[2J: HTTP 500\\x0d"


def test_resume_command_repeats_the_arguments_masked() -> None:
    argv = ["urls.txt", "-H", "Authorization: Bearer s3cret", "--header=Cookie: a=b",
            "http://bob:pw@h/", "-o", "my pages"]  # fmt: skip
    command = resume_command(argv)
    assert command.endswith("'my pages' --resume") and command.startswith("fetcher urls.txt ")
    assert "s3cret" not in command and "a=b" not in command and ":pw@" not in command
    assert "'Authorization: ***'" in command and "http://***@h/" in command
    assert not resume_command(["u.txt", "--refresh"]).endswith("--resume")
    assert resume_command(["u.txt", "--resume"]).count("--resume") == 1


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_says_how_many_are_left_and_how_to_finish(server, tmp_path, signum, code) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(server.url(f"/slow/0.4?n={i}") + "\n" for i in range(20)))
    summary, out = tmp_path / "s.json", tmp_path / "o"
    run = start_cli(str(listing), "-t", "2", "-o", str(out), "--summary-json", str(summary))
    deadline = time.monotonic() + 20  # a third request: one page at least is done (-t 2)
    while server.recorder.total() < 3:
        assert time.monotonic() < deadline, "the run did not start fetching"
        time.sleep(0.05)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == code, stderr
    written = json.loads(summary.read_text())
    done = written["urls"]
    assert 0 < done < 20 and written["not_started"] == 20 - done, stderr
    assert f"stopped by {signal.Signals(signum).name}: {20 - done} URLs not done" in stderr
    command = f"fetcher {listing} -t 2 -o {out} --summary-json {summary} --resume"
    assert f"  to finish the job: {command}" in stderr and written["resume"] == command
    finish = subprocess.run(
        [sys.executable, "-m", *shlex.split(command)], env=cli_env(), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert finish.returncode == 0, finish.stderr
    assert f"{20 - done} fetched" in finish.stderr and f"{done} skipped" in finish.stderr


def test_a_finished_run_has_nothing_left(server, tmp_path) -> None:
    summary = tmp_path / "s.json"
    invoke("-o", str(tmp_path / "o"), "--summary-json", str(summary), server.url("/page/a"))
    written = json.loads(summary.read_text())
    assert (written["not_started"], written["resume"]) == (0, None)


def test_a_list_being_counted_gives_its_count_so_far(tmp_path) -> None:
    """The bar's count while a long list is still being counted: each step's share, heard
    as the count goes, adds up to the total."""
    listing = tmp_path / "long.txt"
    listing.write_text("# urls\n" + "http://127.0.0.1:9/\n\n" * 200_000)
    steps: list[int] = []
    total = expected_count([Source(str(listing))], steps.append)
    assert total == 200_000 and len(steps) > 1 and sum(steps) == total
