"""A host gate that logs, for the spacing tests, the moments it counts --delay by: each
attempt's claimed start and the moment its request left (`HostGate.sent`), as the gate
itself holds them, in whichever process the attempt runs.

A time the server records carries its thread's wake-up (a few ms late under load): two
requests `--delay` apart on the wire may be stamped closer. The client's own moments, on
the same clock (CLOCK_MONOTONIC is one clock for every process of the machine), carry
none. Lines go to the file that $FETCHER_GATE_LOG names, appended, so worker processes
(which receive the gate pickled, as this class) write there too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import fetcher.pools
from fetcher.politeness import STRIPES, HostGate

LOG = "FETCHER_GATE_LOG"
# `python -c` this, with $FETCHER_GATE_LOG set, for the command with a logging gate
COMMAND = "from tests.gatelog import install; install(); from fetcher.cli import main; main()"


class LoggingGate(HostGate):
    def wait_turn(self, host: str, sleep: Callable[[float], None] = time.sleep) -> None:
        super().wait_turn(host, sleep)
        self._log("claim", host)

    def sent(self, host: str) -> None:
        super().sent(host)
        self._log("sent", host)

    def _log(self, event: str, host: str) -> None:
        """The host's last start as the gate holds it just now: the claim's or the send's
        moment (no other attempt to the host can move it within --delay)."""
        slot = self.slot(host)
        with self.locks[slot % STRIPES]:
            moment = self.last_start[slot]
        descriptor = os.open(os.environ[LOG], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, f"{event} {moment!r}\n".encode())  # one write: whole lines
        finally:
            os.close(descriptor)


def install() -> None:
    """Every run's gate, from now on in this process, is a LoggingGate."""
    fetcher.pools.HostGate = LoggingGate  # type: ignore[misc]


def read(path: Path) -> tuple[list[float], list[float]]:
    """The logged claims and sends, each in order."""
    claims: list[float] = []
    sends: list[float] = []
    for line in path.read_text().splitlines():
        event, moment = line.split()
        (claims if event == "claim" else sends).append(float(moment))
    return sorted(claims), sorted(sends)
