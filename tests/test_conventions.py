"""What users of wget, curl and aria2c expect: arguments, options, help, proxies, cookies,
one page per URL however it is spelled, and the library called as Python users call it."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

import fetcher
from fetcher import __version__
from fetcher.errors import ExitCode, UsageError
from tests.conftest import ROOT, cli_env, invoke, run_cli
from tests.server import PNG, free_port_refusing


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_urls_as_arguments_and_input_files_mix(server, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(server.url("/page/in-file") + "\n")
    result = invoke(
        server.url("/page/arg"),
        "http://bad host/",
        "-i",
        str(listing),
        "--jsonl",
        "-o",
        str(tmp_path / "o"),
    )
    by_url = {r["url"]: r for r in records(result.stdout)}
    assert by_url[server.url("/page/arg")]["outcome"] == "fetched"
    assert by_url[server.url("/page/in-file")]["outcome"] == "fetched"
    assert by_url["http://bad host/"]["error"].endswith("(argument 2)")
    assert result.returncode == ExitCode.SOME_FAILED


def test_an_argument_with_another_scheme_is_a_file_and_the_error_says_so(tmp_path) -> None:
    result = invoke("-o", str(tmp_path / "o"), "ftp://example.com/file")
    assert result.returncode == ExitCode.USAGE
    assert "only http and https URLs are fetched" in result.stderr


def test_every_spelling_of_a_page_is_fetched_once(server, tmp_path) -> None:
    base = server.url("/page/p9")
    host = base.split("/")[2]
    spellings = [
        base,
        base.replace("http://", "HTTP://"),
        base + "#top",
        base.replace("/page/", "/page/./"),
        base.replace("/page/", "/./page/"),
        base.replace("p9", "%70%39"),
        base + "?",
    ]
    result = invoke("--jsonl", "-o", str(tmp_path / "o"), stdin="\n".join(spellings) + "\n")
    assert [r["url"] for r in records(result.stdout)] == [base]  # recorded as first given
    assert server.recorder.counts["/page/p9"] == 1
    assert len(list((tmp_path / "o" / host.replace(":", "_")).rglob("*.html"))) == 1


def test_the_extension_comes_from_the_content_type(server, tmp_path) -> None:
    result = invoke("--jsonl", "-o", str(tmp_path / "o"), server.url("/binary/logo"))
    (record,) = records(result.stdout)
    assert record["path"].endswith(".png")
    assert (tmp_path / "o" / record["path"]).read_bytes() == PNG


def test_version_short_and_long() -> None:
    for flag in ("-V", "--version"):
        result = invoke(flag)
        assert result.returncode == 0 and result.stdout == f"fetcher {__version__}\n"


def test_help_is_grouped_and_lists_every_exit_status() -> None:
    result = invoke("--help")
    text = result.stdout
    headings = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert [h for h in headings if h.endswith(":")][:5] == [
        "Input:", "Output:", "Concurrency:", "HTTP:", "Re-runs:",
    ]  # fmt: skip
    codes = text.split("Exit status:")[1].replace("/", " ").split()
    for code in (0, 1, 2, 3, 70, 74, 75, 130, 141, 143):
        assert str(code) in codes, code
    assert "<list[str]>" not in text and "[URL_FILE | URL]..." in text


def test_resume_and_refresh_together_are_refused(tmp_path) -> None:
    result = invoke("--resume", "--refresh", "-o", str(tmp_path / "o"), stdin="")
    assert result.returncode == ExitCode.USAGE
    assert "use either --resume or --refresh" in result.stderr


def test_a_terminal_on_stdin_gets_told_how_to_give_urls(server, tmp_path) -> None:
    controller, terminal = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "fetcher", "-o", str(tmp_path / "o"), "--jsonl"],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), text=True,
    )  # fmt: skip
    os.close(terminal)
    try:
        assert child.stderr is not None
        ready, _, _ = select.select([child.stderr], [], [], 20)
        assert ready, "nothing said on stderr"
        assert "reading URLs from the terminal" in child.stderr.readline()
        os.write(controller, (server.url("/page/typed") + "\n").encode() + b"\x04")
        stdout, _ = child.communicate(timeout=30)
    finally:
        os.close(controller)
        child.kill()
    assert child.returncode == 0 and records(stdout)[0]["outcome"] == "fetched"


def test_proxy_option_wins_over_the_variables(server, tmp_path) -> None:
    target = f"http://127.0.0.1:{free_port_refusing()}/page/proxied"  # only the proxy answers
    dead = f"http://127.0.0.1:{free_port_refusing()}"
    result = invoke(
        "--jsonl", "-o", str(tmp_path / "o"), "--proxy", server.url(""), target,
        env={"http_proxy": dead, "HTTP_PROXY": dead},
    )  # fmt: skip
    assert records(result.stdout)[0]["outcome"] == "fetched", result.stdout
    assert server.recorder.counts[target] == 1


def test_a_proxy_failure_is_named_as_the_proxys(tmp_path) -> None:
    dead = f"http://user:secret@127.0.0.1:{free_port_refusing()}"
    result = invoke(
        "--jsonl", "--retries", "0", "-o", str(tmp_path / "o"), "--proxy", dead,
        "http://127.0.0.1:9/x",
    )  # fmt: skip
    error = records(result.stdout)[0]["error"]
    assert error.startswith("proxy failed: connection refused") and "secret" not in error


def test_cookies_file_as_curl_and_browsers_write_it(server, tmp_path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tyes\n"  # curl's session cookie
        "#HttpOnly_127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tlogin\tsecret\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t1\told\texpired\n"
        "127.0.0.1\tFALSE\t/other\tFALSE\t0\telsewhere\tno\n"
    )
    out = tmp_path / "o"
    result = invoke("--jsonl", "-o", str(out), "--cookies", str(jar), server.url("/echo-cookie/"))
    (record,) = records(result.stdout)
    sent = (out / record["path"]).read_text()
    assert "session=yes" in sent and "login=secret" in sent
    assert "old=" not in sent and "elsewhere" not in sent


def test_a_bad_cookies_file_is_a_usage_error(tmp_path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text("127.0.0.1 FALSE / FALSE 0 spaces-not-tabs\n")
    result = invoke("--cookies", str(jar), "-o", str(tmp_path / "o"), "http://127.0.0.1:9/")
    assert result.returncode == ExitCode.USAGE and "line 1: not a cookie" in result.stderr


def test_the_progress_bar_knows_the_total_from_the_start(server, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    urls = [server.url("/slow/0.3")] + [server.url(f"/page/t{i}") for i in range(20)]
    listing.write_text("# a comment\n\n" + "\n".join(urls) + "\n")
    result = invoke(str(listing), "--progress", "-t", "1", "-o", str(tmp_path / "o"))
    updates = [u for u in result.stderr.split("\r") if "url" in u and not u.startswith("fetcher")]
    first = next(u for u in updates if " 1/" in u or "1url" in u)
    assert " 1/21 " in first, updates[:3]


def test_the_summary_says_when_per_host_kept_threads_idle(server, tmp_path) -> None:
    urls = "".join(server.url(f"/slow/0.1?n={i}") + "\n" for i in range(16))
    summary = tmp_path / "summary.json"
    out = str(tmp_path / "o")
    result = invoke(
        "-t", "8", "--per-host", "1", "--summary-json", str(summary), "-o", out, stdin=urls
    )
    assert "--per-host 1 kept" in result.stderr and "threads idle" in result.stderr
    assert json.loads(summary.read_text())["idle_by_per_host"] > 0.5
    calm = invoke("-t", "2", "-o", str(tmp_path / "o2"), stdin=urls)
    assert "--per-host" not in calm.stderr


def test_library_takes_one_url_as_a_string(server, tmp_path) -> None:
    (record,) = fetcher.fetch(server.url("/page/one"), out=tmp_path, max_size="5M")
    assert record.outcome == "fetched"


def test_library_refuses_bad_options_with_usage_errors(tmp_path) -> None:
    with pytest.raises(UsageError, match="is not a size"):
        list(fetcher.fetch([], out=tmp_path, max_size="5Q"))
    with pytest.raises(UsageError, match="either --resume or --refresh"):
        list(fetcher.fetch([], out=tmp_path, resume=True, refresh=True))


def test_processes_in_a_script_without_a_main_guard_is_one_clear_error(tmp_path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import fetcher\n"
        f"list(fetcher.fetch(['http://127.0.0.1:9/'], out={str(tmp_path / 'o')!r}, processes=2))\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60,
        env={**cli_env(), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert 'if __name__ == "__main__":' in result.stderr
    assert result.stderr.count("Traceback") == 1 and "worker died" not in result.stderr


def test_a_named_pipe_as_url_file_is_read_once_by_the_run(server, tmp_path) -> None:
    """The total is counted from regular files only: counting a FIFO would eat its lines."""
    fifo = tmp_path / "urls.fifo"
    os.mkfifo(fifo)
    urls = [server.url(f"/page/f{i}") for i in range(30)]
    child = subprocess.Popen(
        [sys.executable, "-m", "fetcher", str(fifo), "--jsonl", "-o", str(tmp_path / "o")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), text=True,
    )  # fmt: skip
    with open(fifo, "w") as writer:
        writer.write("\n".join(urls) + "\n")
    stdout, _ = child.communicate(timeout=60)
    assert sorted(r["url"] for r in records(stdout)) == sorted(urls)


def test_a_bad_proxy_is_a_usage_error_that_keeps_its_password(tmp_path) -> None:
    for proxy in (
        "http://bob:S3CRET@127.0.0.1:notaport",
        "http://bob:S3CRET@",
        "ftp://bob:S3CRET@h",
    ):
        result = invoke("--proxy", proxy, "-o", str(tmp_path / "o"), "http://127.0.0.1:9/")
        assert result.returncode == ExitCode.USAGE, proxy
        assert "--proxy" in result.stderr and "S3CRET" not in result.stderr


def test_a_header_that_cannot_be_sent_is_refused_without_its_value(tmp_path) -> None:
    with pytest.raises(UsageError, match="Authorization: its value holds a line break") as caught:
        list(fetcher.fetch([], out=tmp_path, headers={"Authorization": "Bearer S3CRET\n"}))
    assert "S3CRET" not in str(caught.value)
    result = invoke("-H", "Authorization Bearer S3CRET", "-o", str(tmp_path / "o"), stdin="")
    assert result.returncode == ExitCode.USAGE and "S3CRET" not in result.stderr


def test_library_options_of_the_wrong_type_are_usage_errors(tmp_path) -> None:
    for options in ({"threads": "4"}, {"retries": 1.5}, {"backoff": -1}, {"timeout": "30"}):
        with pytest.raises(UsageError):
            list(fetcher.fetch([], out=tmp_path, **options))


def test_host_only_cookies_stay_on_their_host(server, tmp_path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "example.com\tFALSE\t/\tFALSE\t0\thostonly\tH1\n"
        ".example.com\tTRUE\t/\tFALSE\t0\tdomain\tD1\n"
    )
    urls = ["http://example.com/echo-cookie/", "http://sub.example.com/echo-cookie/"]
    out = tmp_path / "o"  # the test server is the proxy: no name is ever resolved
    result = invoke(
        "--jsonl", "-o", str(out), "--cookies", str(jar), "--proxy", server.url(""), *urls
    )
    sent = {r["url"]: (out / r["path"]).read_text() for r in records(result.stdout)}
    assert "hostonly=H1" in sent[urls[0]] and "domain=D1" in sent[urls[0]]
    assert "hostonly" not in sent[urls[1]] and "domain=D1" in sent[urls[1]]


def test_named_pipes_filled_one_after_the_other(server, tmp_path) -> None:
    first, second = tmp_path / "one.fifo", tmp_path / "two.fifo"
    os.mkfifo(first)
    os.mkfifo(second)
    many = [server.url(f"/page/m{i}?{'x' * 40}") for i in range(1500)]  # over a pipe's 64 KiB
    summary = tmp_path / "summary.json"
    command = [sys.executable, "-m", "fetcher", str(first), str(second), "-q"]
    child = subprocess.Popen(
        [*command, "--summary-json", str(summary), "-o", str(tmp_path / "o")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(),
    )  # fmt: skip
    for fifo, urls in ((first, many), (second, [server.url("/page/last")])):
        with open(fifo, "w") as writer:
            writer.write("\n".join(urls) + "\n")
    assert child.wait(timeout=120) == 0
    assert json.loads(summary.read_text())["outcomes"]["fetched"] == 1501


def test_the_summary_shows_control_characters_instead_of_obeying_them(tmp_path) -> None:
    result = invoke("-o", str(tmp_path / "o"), stdin="http://exa\x1b[31mmple/\n")
    assert "\x1b" not in result.stderr and "\\x1b[31m" in result.stderr


def test_the_idle_share_counts_threads_with_processes_too(server, tmp_path) -> None:
    urls = "".join(server.url(f"/slow/0.1?p={i}") + "\n" for i in range(12))
    summary = tmp_path / "summary.json"
    run_cli("-p", "2", "-t", "2", "--per-host", "1", "--summary-json", str(summary),
            "-o", str(tmp_path / "o"), stdin=urls)  # fmt: skip
    assert 0.3 < json.loads(summary.read_text())["idle_by_per_host"] <= 1


def test_a_407_is_the_proxys_failure(server, tmp_path) -> None:
    result = invoke("--jsonl", "-o", str(tmp_path / "o"), server.url("/status/407"))
    (record,) = records(result.stdout)
    assert record["error"].startswith("proxy failed: HTTP 407") and record["attempts"] == 1
