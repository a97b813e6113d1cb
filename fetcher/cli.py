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
from typer._click.exceptions import NoSuchOption

from fetcher import hints, options, trace
from fetcher.api import open_run
from fetcher.environment import Environment, Forgiving
from fetcher.errors import ExitCode, FetcherError, OutDirBusy, UsageError
from fetcher.inputs import Expected, Source, open_check, read_batches, reads_stdin, sources
from fetcher.report import (
    Progress,
    Summary,
    URLLines,
    error,
    processes_worth_it,
    write_record,
)  # fmt: skip
from fetcher.runner import Run
from fetcher.settings import Settings

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


@app.command(cls=options.GroupedCommand, epilog=options.EPILOG, context_settings=options.CONTEXT)
@options.declared_command
def command(ctx: typer.Context, **values: Any) -> int:
    """Fetch lists of web pages concurrently and save them under --out, one file per URL."""
    env = options.environment(ctx)
    summary_json: Path | None = values["summary_json"]
    if summary_json and not summary_json.parent.resolve().is_dir():
        raise typer.BadParameter(
            f"folder {summary_json.parent} does not exist", param_hint="--summary-json"
        )
    settings = _settings(**options.settings_values(values))
    if values["quiet"] and settings.debug:
        raise typer.BadParameter("use either -q or --debug", param_hint="--debug")
    if problem := hints.out_problem(settings.out):
        raise typer.BadParameter(problem, param_hint="--out")
    files = [str(name) for name in values["input_file"] or []]
    given = sources(values["arguments"] or [], files)
    open_check(given, env.stdin)
    if env.stdin_isatty and reads_stdin(given) and not values["quiet"]:
        print(TERMINAL_HINT, file=env.stderr)
    return _run(given, settings, env, values)


def _run(given: list[Source], settings: Settings, env: Environment, values: dict[str, Any]) -> int:
    """The run, its records, summary and exit code; SIGINT/SIGTERM stop it cleanly."""
    stopped_by: list[str] = []
    runs: list[Run] = []

    def stop() -> None:
        for each in runs:
            each.stop()

    # held to the end: a signal after the last record must not cost the index, the summary
    # or --summary-json
    with _signals(stop, stopped_by):
        batches = read_batches(given, dedupe=settings.dedupe, stdin=env.stdin)
        with open_run(batches, settings, env.stderr) as run:
            runs.append(run)
            summary = _drive(run, stopped_by, Expected(given), env, values)
        if not values["quiet"]:
            print("\n".join(summary.lines()), file=env.stderr)
        code = summary.exit_code()
        json = values["summary_json"]
        if json and not _write_summary(summary, json, env) and code == ExitCode.OK:
            code = ExitCode.OUTPUT  # the run worked, but what was asked for is missing
    if run.abandoned:  # worker threads still hold sockets: leave without waiting for them
        env.flush()
        os._exit(code)
    return int(code)


def _write_summary(summary: Summary, path: Path, env: Environment) -> bool:
    try:
        summary.write_json(path)
    except OSError as exc:
        error(f"cannot write --summary-json {path}: {exc.strerror or exc}", env.stderr)
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
    run: Run, stopped_by: list[str], expected: Expected, env: Environment, values: dict[str, Any]
) -> Summary:
    """Consume the run: records to stdout, progress and lines on stderr; the summary of what
    happened."""
    summary = Summary()
    bar, lines = _for_people(run, expected, env, values)
    jsonl = values["jsonl"]
    if stopped_by:  # a signal came while the run was being set up
        run.stop()
    debug = trace.writing_to(bar.write) if run.settings.debug else contextlib.nullcontext()
    try:
        with debug:  # the run's threads write above the bar; worker processes, to stderr
            for record in run:
                summary.add(record)
                lines.add(record)
                bar.update(record, run.total or expected.count)
                if jsonl and (failure := write_record(record, env.stdout, env.stderr)):
                    jsonl = False
                    stopped_by.append(failure)
                    run.stop()
    finally:
        bar.close(run.total)
    summary.finish(stopped_by[0] if stopped_by else None)
    _left(summary, run.total, expected.count, env.argv)
    summary.per_host_idle = (run.settings.per_host, run.idle_by_per_host)
    summary.connections = run.connections
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    summary.processes_hint = processes_worth_it(
        summary.cpu, summary.elapsed, run.pool_kind, cores or 1
    )
    return summary


def _for_people(
    run: Run, expected: Expected, env: Environment, values: dict[str, Any]
) -> tuple[Progress, URLLines]:
    """The bar and the lines per URL on stderr, as the options and the terminal ask; -q wins
    over --progress, -v and --debug, as wget's -q and curl's -s do."""
    quiet = values["quiet"]

    def total() -> int | None:
        return run.total or expected.count

    enabled = False if quiet else values["progress"]

    def listed() -> int:  # while the total is not known: what is counted or read so far
        return max(run.listed, expected.so_far)

    bar = Progress(enabled, env.stderr, env.stderr_isatty, total, listed)
    every = not quiet and (values["verbose"] or run.settings.debug)
    return bar, URLLines(bar, failures=not (quiet or env.stderr_isatty), every=every)


def _left(summary: Summary, total: int | None, estimate: int | None, argv: tuple[str, ...]) -> None:
    """After a stop: how many URLs of the list got no record (exact once the list was read to
    its end, else from its lines), and the command that does them."""
    if not summary.stopped_by:
        return
    known = total if total is not None else estimate
    summary.not_started = None if known is None else max(0, known - summary.total)
    summary.exact = total is not None
    summary.resume = hints.resume_command(argv)


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script: the command on this process's streams, its code as the exit."""
    sys.stderr = Forgiving(sys.stderr)  # the process's own: a closed stderr costs no run
    sys.exit(run(argv, Environment.of_process()))


def run(argv: list[str] | None, env: Environment) -> int:
    """The command with `argv` (None: the process's) on `env`'s streams: every failure
    turned into one line and a code, which is returned (tests run the CLI so, in-process)."""
    env.argv = tuple(sys.argv[1:] if argv is None else argv)
    try:
        result = typer.main.get_command(app).main(
            args=argv, prog_name="fetcher", standalone_mode=False, obj=env
        )
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # bad usage: unknown option, bad value, ...
        error(f"{_usage_message(exc)} (see fetcher --help)", env.stderr)
        return ExitCode.USAGE
    except (typer.Abort, KeyboardInterrupt):
        return ExitCode.SIGINT
    except OutDirBusy as exc:
        error(str(exc), env.stderr)
        return ExitCode.BUSY
    except FetcherError as exc:
        error(str(exc), env.stderr)
        return ExitCode.USAGE
    except Exception as exc:
        if os.environ.get("FETCHER_DEBUG"):
            raise
        error(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set FETCHER_DEBUG=1 for the traceback, and please report it)",
            env.stderr,
        )
        return ExitCode.INTERNAL


def _usage_message(exc: typer.TyperException) -> str:
    """click's message; for an option of wget, curl or aria2c, fetcher's equivalent instead
    of the nearest spelling (--wait is --delay, not --quiet)."""
    option = getattr(exc, "option_name", None)
    if isinstance(exc, NoSuchOption) and option and (hint := hints.option_hint(option)):
        return f"No such option: {option}; {hint}"
    return str(exc.format_message())
