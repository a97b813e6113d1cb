"""The command line: options → Settings → a Run → records, summary and an exit code.

Typer only translates; the work is in the library. Every error a user can cause ends as one
line on stderr and a documented exit code; tracebacks only with FETCHER_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer

from fetcher import options
from fetcher.api import open_run
from fetcher.cookies import Cookie, load_cookies
from fetcher.errors import ExitCode, FetcherError, OutDirBusy, UsageError
from fetcher.inputs import Expected, Source, open_check, read_batches, reads_terminal, sources
from fetcher.options import DEFAULTS
from fetcher.report import (
    Forgiving,
    Progress,
    Summary,
    error,
    processes_worth_it,
    write_record,
)
from fetcher.runner import Run
from fetcher.settings import Settings, parse_header

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
TERMINAL_HINT = (
    "fetcher: reading URLs from the terminal, one per line; Ctrl-D ends the list "
    "(or give URL files or URLs as arguments: fetcher --help)"
)


@app.command(cls=options.GroupedCommand, epilog=options.EPILOG)
def command(
    arguments: options.Sources = None,
    input_file: options.InputFiles = None,
    dedupe: options.Dedupe = DEFAULTS.dedupe,
    out: options.Out = DEFAULTS.out,
    jsonl: options.Jsonl = False,
    raw: options.Raw = DEFAULTS.raw,
    progress: options.Progress = None,
    quiet: options.Quiet = False,
    summary_json: options.SummaryJson = None,
    threads: options.Threads = DEFAULTS.threads,
    processes: options.Processes = DEFAULTS.processes,
    dask: options.Dask = None,
    per_host: options.PerHost = DEFAULTS.per_host,
    delay: options.Delay = DEFAULTS.delay,
    retries: options.Retries = DEFAULTS.retries,
    timeout: options.Timeout = DEFAULTS.timeout,
    max_size: options.MaxSize = DEFAULTS.max_size,
    header: options.Headers = None,
    user_agent: options.UserAgent = DEFAULTS.user_agent,
    proxy: options.Proxy = None,
    cookies: options.Cookies = None,
    insecure: options.Insecure = False,
    ca_bundle: options.CaBundle = None,
    resume: options.Resume = DEFAULTS.resume,
    refresh: options.Refresh = DEFAULTS.refresh,
    version: options.Version = False,
) -> int:
    """Fetch lists of web pages concurrently and save them under --out, one file per URL."""
    if dask is not None:
        from fetcher.pools.dask import require_extra

        require_extra()
    if summary_json and not summary_json.parent.resolve().is_dir():
        raise typer.BadParameter(
            f"folder {summary_json.parent} does not exist", param_hint="--summary-json"
        )
    settings = _settings(
        out=out,
        threads=threads,
        processes=processes,
        dask=dask,
        per_host=per_host,
        delay=delay,
        retries=retries,
        timeout=timeout,
        max_size=max_size,
        headers=tuple(_header(h) for h in header or ()),
        user_agent=user_agent,
        verify=_verify(insecure, ca_bundle),
        proxy=proxy,
        cookies=_cookies(cookies),
        raw=raw,
        dedupe=dedupe,
        resume=resume,
        refresh=refresh,
    )
    given = sources(arguments or [], [str(name) for name in input_file or []])
    open_check(given)
    if reads_terminal(given):
        print(TERMINAL_HINT, file=sys.stderr)
    return _run(given, settings, jsonl=jsonl, progress=progress, quiet=quiet, json=summary_json)


def _run(
    given: list[Source],
    settings: Settings,
    *,
    jsonl: bool,
    progress: bool | None,
    quiet: bool,
    json: Path | None,
) -> int:
    """The run, its records, summary and exit code; SIGINT/SIGTERM stop it cleanly."""
    stopped_by: list[str] = []
    runs: list[Run] = []

    def stop() -> None:
        for each in runs:
            each.stop()

    # held to the end: a signal after the last record must not cost the index, the summary
    # or --summary-json
    with _signals(stop, stopped_by):
        with open_run(read_batches(given, dedupe=settings.dedupe), settings) as run:
            runs.append(run)
            expected = Expected(given)
            summary = _drive(run, stopped_by, expected, jsonl=jsonl, progress=progress)
        if not quiet:
            print("\n".join(summary.lines()), file=sys.stderr)
        code = summary.exit_code()
        if json and not _write_summary(summary, json) and code == ExitCode.OK:
            code = ExitCode.OUTPUT  # the run worked, but what was asked for is missing
    if run.abandoned:  # worker threads still hold sockets: leave without waiting for them
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, AttributeError):
                stream.flush()
        os._exit(code)
    return int(code)


def _verify(insecure: bool, ca_bundle: Path | None) -> bool | str:
    if insecure and ca_bundle:
        raise typer.BadParameter("use either --insecure or --ca-bundle", param_hint="--insecure")
    return False if insecure else (str(ca_bundle) if ca_bundle else True)


def _cookies(path: Path | None) -> tuple[Cookie, ...]:
    try:
        return load_cookies(path) if path else ()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cookies") from None


def _header(text: str) -> tuple[str, str]:
    try:
        return parse_header(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'-H' / '--header'") from None


def _write_summary(summary: Summary, path: Path) -> bool:
    try:
        summary.write_json(path)
    except OSError as exc:
        error(f"cannot write --summary-json {path}: {exc.strerror or exc}")
        return False
    return True


def _settings(**values: Any) -> Settings:
    try:
        return Settings(**values)
    except ValueError as exc:  # e.g. --timeout nan, which passes typer's range check
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def _signals(stop: Callable[[], None], stopped_by: list[str]) -> Iterator[None]:
    """SIGINT/SIGTERM stop the run cleanly (noted in `stopped_by`) while this is held."""

    def on_signal(signum: int, _frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _drive(
    run: Run, stopped_by: list[str], expected: Expected, *, jsonl: bool, progress: bool | None
) -> Summary:
    """Consume the run: records to stdout, progress; the summary of what happened."""
    summary, bar = Summary(), Progress(progress)
    if stopped_by:  # a signal came while the run was being set up
        run.stop()
    try:
        for record in run:
            summary.add(record)
            bar.update(record, run.total or expected.count)
            if jsonl and (failure := write_record(record)):
                jsonl = False
                stopped_by.append(failure)
                run.stop()
    finally:
        bar.close(run.total)
    summary.finish(stopped_by[0] if stopped_by else None)
    summary.per_host_idle = (run.settings.per_host, run.idle_by_per_host)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    summary.processes_hint = processes_worth_it(
        summary.cpu, summary.elapsed, run.settings.backend, cores or 1
    )
    return summary


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script: run the command, turn every failure into one line and a code."""
    code: int
    sys.stderr = Forgiving(sys.stderr)
    try:
        result = typer.main.get_command(app).main(
            args=argv, prog_name="fetcher", standalone_mode=False
        )
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # bad usage: unknown option, bad value, ...
        error(f"{exc.format_message()} (see fetcher --help)")
        code = ExitCode.USAGE
    except (typer.Abort, KeyboardInterrupt):
        code = ExitCode.SIGINT
    except OutDirBusy as exc:
        error(str(exc))
        code = ExitCode.BUSY
    except FetcherError as exc:
        error(str(exc))
        code = ExitCode.USAGE
    except Exception as exc:
        if os.environ.get("FETCHER_DEBUG"):
            raise
        error(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set FETCHER_DEBUG=1 for the traceback, and please report it)"
        )
        code = ExitCode.INTERNAL
    sys.exit(code)
