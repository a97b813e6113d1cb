"""What a run writes for people and pipes: records on stdout; the progress bar, the summary
and error lines on stderr. A stream that is closed or broken costs output, never the run."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from fetcher.errors import ExitCode
from fetcher.records import OUTCOMES, Record

if TYPE_CHECKING:
    from fetcher.pools import PoolKind

TOP_ERRORS = 5
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
IDLE_WORTH_A_WORD = 0.05  # share of thread time lost to --per-host worth a line in the summary
ONE_CORE = 0.9  # CPU seconds per second of a run in one process, past which a core was its limit
WORTH_PROCESSES = 10.0  # seconds: in a shorter run, worker processes' start-up eats the gain
_STOPS = {
    "SIGPIPE": "SIGPIPE (the reader of standard output went away)",
    "OUTPUT": "an error writing records to standard output",
}


class Progress:
    """A tqdm bar on stderr: done/total once the total is known, rate, failures so far.

    `enabled=None` shows it only when stderr is a terminal (tqdm's own rule for its
    `disable=None`).
    """

    def __init__(self, enabled: bool | None, stderr: TextIO, terminal: bool) -> None:
        self.bar = tqdm(
            total=None,
            unit="url",
            file=stderr,
            dynamic_ncols=True,
            disable=not (terminal if enabled is None else enabled),
            smoothing=0.05,
        )
        self.failed = 0

    def update(self, record: Record, total: int | None) -> None:
        if total is not None and self.bar.total != total:
            self.bar.total = total
        if record.outcome == "failed":
            self.failed += 1
            self.bar.set_postfix_str(f"failed={self.failed}", refresh=False)
        self.bar.update(1)

    def close(self, total: int | None) -> None:
        if total is not None:
            self.bar.total = total
            self.bar.refresh()
        self.bar.close()


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
    connections: int | None = None  # TCP connections the run opened (None: not counted)

    def add(self, record: Record) -> None:
        self.outcomes[record.outcome] += 1
        if record.status is not None:
            self.statuses[record.status] += 1
        if record.outcome == "fetched":
            self.saved_bytes += record.bytes or 0
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
        lines = [
            f"fetcher: {self.total} URLs in {self.elapsed:.2f} s "
            f"({self.pages_per_second():.1f} pages/s): {counts}"
        ]
        if self.stopped_by:
            why = _STOPS.get(self.stopped_by, self.stopped_by)
            lines.append(f"  stopped by {why}: URLs not yet finished were not saved")
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

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


def processes_worth_it(cpu: float, elapsed: float, kind: PoolKind, cores: int) -> int:
    """Worker processes to suggest (one per core) after a long run of threads in one process
    that kept a core busy throughout: Python ran one of its threads at a time, so the other
    cores idled. 0 when that is not the case (the run waited on the network, or was short)."""
    if not kind.one_core or cores < 2 or elapsed < WORTH_PROCESSES:
        return 0
    return cores if cpu >= ONE_CORE * elapsed else 0


def printable(text: str) -> str:
    """`text` for a terminal: control characters (escape sequences, carriage returns) that a
    URL list or a server may carry are shown as \\xNN, not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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
