"""What a run writes for people and pipes: records on stdout; the progress bar, the summary
and error lines on stderr. A stream that is closed or broken costs output, never the run."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from fetcher.errors import ExitCode
from fetcher.records import OUTCOMES, Record
from fetcher.urls import printable

if TYPE_CHECKING:
    from fetcher.pools import PoolKind

TOP_ERRORS = 5
IDLE_WORTH_A_WORD = 0.05  # share of thread time lost to --per-host worth a line in the summary
ONE_CORE = 0.9  # CPU seconds per second of a run in one process, past which a core was its limit
WORTH_PROCESSES = 10.0  # seconds: in a shorter run, worker processes' start-up eats the gain
TICK = 0.5  # seconds between two refreshes of the bar, records or not
_STOPS = {
    "SIGPIPE": "SIGPIPE (the reader of standard output went away)",
    "OUTPUT": "an error writing records to standard output",
}


class Progress:
    """A tqdm bar on stderr: done/total once the total is known, rate, failures so far.

    `enabled=None` shows it only when stderr is a terminal (tqdm's own rule for its
    `disable=None`). A thread of its own refreshes it every TICK seconds, so the clock and
    the total (`total()`, asked each time; until it is known, `listed()`: the count so far)
    move while the first pages are still in flight.
    """

    def __init__(
        self,
        enabled: bool | None,
        stderr: TextIO,
        terminal: bool,
        total: Callable[[], int | None] = lambda: None,
        listed: Callable[[], int] = lambda: 0,
    ) -> None:
        self.bar = tqdm(
            total=None,
            unit="url",
            file=stderr,
            dynamic_ncols=True,
            disable=not (terminal if enabled is None else enabled),
            smoothing=0.05,
        )
        self.stderr, self.total, self.listed, self.failed = stderr, total, listed, 0
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="fetcher-bar")
        if not self.bar.disable:
            self._ticker.start()

    def _tick(self) -> None:
        while not self._closed.wait(TICK):
            self._set_total(self.total())
            self.bar.refresh()

    def _set_total(self, total: int | None) -> None:
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self._postfix()

    def _postfix(self) -> None:
        """Failures so far; while the total is not known, how many URLs are listed so far."""
        parts = [f"failed={self.failed}"] if self.failed else []
        if self.bar.total is None:
            parts.append(f"listed={self.listed()} so far")
        self.bar.set_postfix_str(", ".join(parts), refresh=False)

    def update(self, record: Record, total: int | None) -> None:
        if self.bar.disable:  # (costs nothing per record when there is no bar)
            return
        if record.outcome == "failed":
            self.failed += 1
        self._set_total(total)
        self.bar.update(1)

    def write(self, text: str) -> None:
        """A line above the bar, which does not tear (tqdm.write)."""
        tqdm.write(text, file=self.stderr)

    def close(self, total: int | None) -> None:
        self._closed.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if total is not None:
            self.bar.total = total
            self.bar.refresh()
        self.bar.close()


class URLLines:
    """A line per URL on stderr as each finishes: every URL with -v, the failures alone when
    stderr is a log (not a terminal), nothing with -q (the cron job's log names each failed
    URL, as wget's does)."""

    def __init__(self, progress: Progress, *, failures: bool, every: bool) -> None:
        self.progress, self.failures, self.every = progress, failures, every

    def add(self, record: Record) -> None:
        if self.every or (self.failures and record.outcome == "failed"):
            self.progress.write(url_line(record))


def url_line(record: Record) -> str:
    """`fetcher: failed: URL: reason`, or `fetcher: fetched: URL (200, 1.2 KiB, 0.31 s)`;
    control characters shown, not obeyed."""
    url = printable(record.url)
    if record.outcome == "failed":
        return f"fetcher: failed: {url}: {printable(record.error or 'unknown')}"
    details = [str(record.status)] if record.status is not None else []
    if record.bytes is not None and record.outcome == "fetched":
        details.append(_human(record.bytes))
    if record.attempts:
        details.append(f"{record.elapsed:.2f} s")
    shown = f" ({', '.join(details)})" if details else ""
    return f"fetcher: {record.outcome.replace('_', ' ')}: {url}{shown}"


@dataclass
class Summary:
    """Counts gathered record by record; rendered for people or as JSON at the end."""

    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)  # this process's, all threads
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    saved_bytes: int = 0
    elapsed: float = 0.0
    stopped_by: str | None = None
    per_host_idle: tuple[int | None, float] = (None, 0.0)  # (--per-host, share of time idle)
    cpu: float = 0.0  # CPU seconds this process spent on the run
    processes_hint: int = 0  # worker processes worth suggesting (`processes_worth_it`), or 0
    not_started: int | None = 0  # URLs of the list left without a record; None: not known
    exact: bool = True  # whether not_started is exact (else counted from the list's lines)
    resume: str | None = None  # after a stop: the command that finishes the job
    connections: int | None = None  # TCP connections the run opened (None: not counted)

    def add(self, record: Record) -> None:
        self.outcomes[record.outcome] += 1
        if record.status is not None:
            self.statuses[record.status] += 1
        if record.outcome == "fetched":
            self.saved_bytes += (record.bytes or 0) if record.path else 0  # (--no-pages)
            self.changes[{None: "new", True: "changed", False: "unchanged"}[record.changed]] += 1
        elif record.outcome == "not_modified":
            self.changes["unchanged"] += 1
        if record.outcome == "failed":
            reason = record.reason or record.error or "unknown"
            self.errors[reason] += 1
            self.examples.setdefault(reason, record.url)

    def finish(self, stopped_by: str | None = None) -> None:
        self.elapsed = time.monotonic() - self.started
        self.cpu = time.process_time() - self.cpu_started
        self.stopped_by = stopped_by

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def exit_code(self) -> ExitCode:
        if self.stopped_by:
            return ExitCode[self.stopped_by]
        failed = self.outcomes["failed"]
        if failed == 0:
            return ExitCode.OK
        return ExitCode.ALL_FAILED if failed == self.total else ExitCode.SOME_FAILED

    def pages_per_second(self) -> float:
        pages = self.outcomes["fetched"] + self.outcomes["not_modified"]
        return pages / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "urls": self.total,
            "outcomes": {name: self.outcomes[name] for name in OUTCOMES},
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "changes": {name: self.changes[name] for name in ("new", "changed", "unchanged")},
            "bytes": self.saved_bytes,
            "elapsed": round(self.elapsed, 3),
            "pages_per_second": round(self.pages_per_second(), 2),
            "errors": [
                {"reason": reason, "count": n, "example": self.examples[reason]}
                for reason, n in self.errors.most_common(TOP_ERRORS)
            ],
            "stopped_by": self.stopped_by,
            "not_started": self.not_started,
            "resume": self.resume,
            "idle_by_per_host": round(self.per_host_idle[1], 3),
            "connections": self.connections,
            "exit_code": int(self.exit_code()),
        }

    def lines(self) -> list[str]:
        counts = ", ".join(
            f"{self.outcomes[n]} {n.replace('_', ' ')}"
            for n in OUTCOMES
            if self.outcomes[n] or n in ("fetched", "failed")
        )
        rate = f" ({self.pages_per_second():.1f} pages/s)" if self.pages_per_second() else ""
        lines = [f"fetcher: {_urls(self.total)} in {self.elapsed:.2f} s{rate}: {counts}"]
        if self.stopped_by:
            lines += self._stop_lines()
        if self.statuses:
            lines.append(
                "  HTTP status: "
                + ", ".join(f"{code} x{n}" for code, n in sorted(self.statuses.items()))
            )
        lines.append(
            f"  saved: {_human(self.saved_bytes)}; "
            + ", ".join(f"{self.changes[n]} {n}" for n in ("new", "changed", "unchanged"))
        )
        per_host, idle = self.per_host_idle
        if idle >= IDLE_WORTH_A_WORD:
            lines.append(
                f"  --per-host {per_host} kept {idle:.0%} of the threads idle: raise it if the"
                " sites allow more requests at once"
            )
        if self.processes_hint:
            lines.append(
                "  one core was busy throughout (a process's threads run Python one at a time):"
                f" --processes {self.processes_hint} may be faster"
            )
        for reason, n in self.errors.most_common(TOP_ERRORS):
            example = self.examples[reason]
            lines.append(f"  {n:>6} x {printable(reason)}  (e.g. {printable(example)})")
        if len(self.errors) > TOP_ERRORS:
            lines.append(f"         … and {len(self.errors) - TOP_ERRORS} other reasons")
        return lines

    def _stop_lines(self) -> list[str]:
        """What a stop left undone, and the command that does it."""
        why = _STOPS.get(self.stopped_by or "", self.stopped_by)
        if self.not_started is None:
            left = "URLs not yet finished were not saved"
        else:
            left = f"{'' if self.exact else 'about '}{_urls(self.not_started)} not done"
        lines = [f"  stopped by {why}: {left}"]
        if self.resume:
            lines.append(f"  to finish the job: {self.resume}")
        return lines

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


def processes_worth_it(cpu: float, elapsed: float, kind: PoolKind, cores: int) -> int:
    """Worker processes to suggest (one per core) after a long run of threads in one process
    that kept a core busy throughout: Python ran one of its threads at a time, so the other
    cores idled. 0 when that is not the case (the run waited on the network, or was short)."""
    if not kind.one_core or cores < 2 or elapsed < WORTH_PROCESSES:
        return 0
    return cores if cpu >= ONE_CORE * elapsed else 0


def _urls(count: int) -> str:
    return f"{count} URL" if count == 1 else f"{count} URLs"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def write_record(record: Record, stdout: TextIO | None, stderr: TextIO) -> str | None:
    """Write one record; how the run must stop when standard output cannot take it:
    "SIGPIPE" when the reader has gone away (`fetcher --jsonl | head`), "OUTPUT" when it
    cannot be written (closed, disk full)."""
    try:
        if stdout is None:  # started with standard output closed (>&-)
            raise OSError(errno.EBADF, "standard output is closed")
        stdout.write(record.to_json() + "\n")
        stdout.flush()  # a reader downstream sees each record as it happens
    except OSError as exc:
        with contextlib.suppress(OSError, AttributeError):  # later flushes, even at exit: no-op
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())  # type: ignore[union-attr]
        if isinstance(exc, BrokenPipeError):
            return "SIGPIPE"
        message = f"cannot write records to standard output: {exc.strerror or exc}; stopping"
        error(message, stderr)
        return "OUTPUT"
    return None


def error(message: str, stderr: TextIO) -> None:
    """One line for people: what failed."""
    print(f"fetcher: error: {message}", file=stderr)
