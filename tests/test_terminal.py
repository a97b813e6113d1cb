"""What a person at a terminal sees, through a real pseudo-terminal (`pty`): the bar is alive
from the first second, with the total (or the count so far) and a clock that moves while the
first pages are still in flight; -q keeps the terminal silent."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.conftest import cli_env

# what a terminal shows within a given time: on one worker of the suite, never beside another
# test that measures (CONTRIBUTING.md, "Tests in parallel")
pytestmark = pytest.mark.xdist_group("timing")

CLOCK = re.compile(r"\[00:0(\d)")


def on_a_terminal(
    args: list[str], seconds: float, stdin: int | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """`fetcher ARGS` with standard error on a pseudo-terminal of 100 columns: what it
    showed there in its first `seconds`, and the process (still running, or ended)."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "fetcher", *args],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=side,
        env=cli_env(),
    )
    os.close(side)
    shown, end = b"", time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([main], [], [], left)[0]:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the process ended and closed the terminal
                break
            shown += chunk
    os.close(main)
    return shown.decode("utf-8", "replace"), process


def finish(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.communicate(timeout=30)


def test_bar_shows_total_and_a_moving_clock_before_the_first_page(server, tmp_path) -> None:
    urls = [server.url(f"/slow/6?n={i}") for i in range(3)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    shown, process = on_a_terminal([str(listing), "-o", str(tmp_path / "o")], 3.2)
    try:
        assert process.poll() is None  # nothing has finished: the pages take 6 s
        assert "0/3" in shown and "1/3" not in shown, shown
        assert len(set(CLOCK.findall(shown))) >= 2, shown  # it stayed at 00:00 until a page ended
    finally:
        finish(process)


def test_bar_counts_a_list_still_coming_in(server, tmp_path) -> None:
    """A pipe that has sent two URLs and stays open: no total yet, the count so far."""
    read, write = os.pipe()
    os.write(write, "".join(server.url(f"/slow/6?n={i}") + "\n" for i in range(2)).encode())
    try:
        shown, process = on_a_terminal(["-", "-o", str(tmp_path / "o")], 3.2, stdin=read)
    finally:
        os.close(read)
    try:
        assert "listed=2 so far" in shown, shown
        assert len(set(CLOCK.findall(shown))) >= 2, shown
    finally:
        os.close(write)
        finish(process)


def test_quiet_keeps_the_terminal_silent(server, tmp_path) -> None:
    """-q wins over --progress, as wget -q and curl -s are silent: not a byte on the terminal."""
    args = [server.url("/status/404"), server.url("/page/a"), "-o", str(tmp_path / "o")]
    shown, process = on_a_terminal([*args, "-q", "--progress"], 3)
    assert process.wait(timeout=30) == 1
    assert shown == ""


def test_a_terminal_gets_the_bar_and_no_failure_lines(server, tmp_path) -> None:
    args = [server.url("/status/404"), server.url("/page/a"), "-o", str(tmp_path / "o")]
    shown, process = on_a_terminal(args, 3)
    assert process.wait(timeout=30) == 1
    assert "2/2" in shown and "fetcher: 2 URLs in" in shown
    assert "fetcher: failed:" not in shown  # the bar counts them; -v names them
