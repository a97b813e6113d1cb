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
from typing import Annotated, Any, NoReturn

import typer

from fetcher import __version__
from fetcher.api import open_run
from fetcher.errors import ExitCode, FetcherError, OutDirBusy, UsageError
from fetcher.inputs import open_check, read_entries
from fetcher.report import Forgiving, Progress, Summary, error, write_record
from fetcher.runner import Run
from fetcher.settings import DAY, Settings, format_size, parse_header, parse_size

EPILOG = """\b
Examples:
  fetcher urls.txt --threads 5 --out pages/
  some-tool | fetcher - --jsonl | jq -r 'select(.outcome=="failed").url'
  fetcher urls.txt --processes 2 --threads 16 --resume --summary-json run.json
  fetcher urls.txt --dask tcp://scheduler:8786 --threads 16 --out pages/

\b
Exit status: 0 all fetched, 1 some failed, 2 bad usage, 3 all failed,
75 out dir in use by another run, 130/143 stopped by SIGINT/SIGTERM.
"""

DEFAULTS = Settings()  # the options' defaults are the library's

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        with contextlib.suppress(OSError, AttributeError):
            print(f"fetcher {__version__}", flush=True)
        raise typer.Exit(0)


def _size(text: str | int) -> int:
    try:
        return parse_size(str(text))  # (the default comes as a number)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _header(text: str) -> tuple[str, str]:
    try:
        return parse_header(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'-H' / '--header'") from None


Files = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="URL_FILE...",
        show_default=False,
        help="Files of URLs, one per line ('#' comments and blank lines skipped). "
        "'-' or none reads standard input, as it arrives.",
    ),
]
Out = Annotated[
    Path, typer.Option("-o", "--out", metavar="DIR", help="Where pages go; created if missing.")
]
Threads = Annotated[
    int,
    typer.Option(
        "-t",
        "--threads",
        min=1,
        metavar="N",
        help="Concurrent fetches (per process with --processes).",
    ),
]
Processes = Annotated[
    int,
    typer.Option(
        "-p",
        "--processes",
        min=0,
        show_default=False,
        metavar="N",
        help="Use N worker processes, each running --threads threads (N x threads in flight).",
    ),
]
Dask = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="ADDRESS",
        show_default=False,
        help="Run the fetches on a Dask cluster: a scheduler address (tcp://host:8786), "
        "'env' for $DASK_SCHEDULER_ADDRESS, or 'local' for one on this machine. Pages are "
        "saved here. Needs pip install 'fetcher[dask]'.",
    ),
]
PerHost = Annotated[
    int | None,
    typer.Option(
        "--per-host", min=1, metavar="N", help="At most N requests in flight to one host."
    ),
]
Delay = Annotated[
    float,
    typer.Option(
        "--delay",
        min=0.0,
        max=DAY,
        metavar="SECONDS",
        help="At least this long between the starts of two requests to one host.",
    ),
]
Retries = Annotated[
    int,
    typer.Option(
        "--retries", min=0, metavar="N", help="Retries of a transient failure after the first try."
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.001,
        max=DAY,
        metavar="SECONDS",
        help="Seconds for connect, for each read, and for one whole attempt.",
    ),
]
MaxSize = Annotated[
    int,
    typer.Option(
        "--max-size",
        parser=_size,
        metavar="BYTES",
        show_default=format_size(DEFAULTS.max_size),
        help="Largest body accepted, after decompression; K, M, G suffixes.",
    ),
]
Headers = Annotated[
    list[str] | None,
    typer.Option(
        "-H",
        "--header",
        metavar="'Name: value'",
        show_default=False,
        help="Extra request header; repeatable.",
    ),
]
UserAgent = Annotated[
    str, typer.Option("-A", "--user-agent", metavar="TEXT", help="User-Agent header.")
]


@app.command(epilog=EPILOG, no_args_is_help=False)
def command(
    url_files: Files = None,
    out: Out = DEFAULTS.out,
    threads: Threads = DEFAULTS.threads,
    processes: Processes = DEFAULTS.processes,
    dask: Dask = None,
    per_host: PerHost = DEFAULTS.per_host,
    delay: Delay = DEFAULTS.delay,
    retries: Retries = DEFAULTS.retries,
    timeout: Timeout = DEFAULTS.timeout,
    max_size: MaxSize = DEFAULTS.max_size,
    header: Headers = None,
    user_agent: UserAgent = DEFAULTS.user_agent,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify TLS certificates.")
    ] = False,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="PATH",
            help="Verify TLS against this CA bundle (PEM).",
        ),
    ] = None,
    jsonl: Annotated[
        bool,
        typer.Option("--jsonl", help="Write one JSON record per URL to stdout as each finishes."),
    ] = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Save bodies byte for byte, without converting text to UTF-8."),
    ] = DEFAULTS.raw,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip URLs the out dir's index holds as fetched.")
    ] = DEFAULTS.resume,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh", help="Conditional re-fetch (ETag / Last-Modified); a 304 keeps the page."
        ),
    ] = DEFAULTS.refresh,
    dedupe: Annotated[
        bool, typer.Option("--dedupe/--no-dedupe", help="Fetch a URL listed twice only once.")
    ] = DEFAULTS.dedupe,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            show_default="when stderr is a terminal",
            help="Progress bar on stderr.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No summary.")] = False,
    summary_json: Annotated[
        Path | None,
        typer.Option(
            "--summary-json",
            dir_okay=False,
            metavar="PATH",
            help="Also write the summary as JSON to this file.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> int:
    """Fetch lists of web pages concurrently and save them under --out, one file per URL."""
    if insecure and ca_bundle:
        raise typer.BadParameter("use either --insecure or --ca-bundle", param_hint="--insecure")
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
        verify=False if insecure else (str(ca_bundle) if ca_bundle else True),
        raw=raw,
        dedupe=dedupe,
        resume=resume,
        refresh=refresh,
    )
    files = url_files or []
    open_check(files)
    stopped_by: list[str] = []
    runs: list[Run] = []

    def stop() -> None:
        for each in runs:
            each.stop()

    # held to the end: a signal after the last record must not cost the index, the summary
    # or --summary-json
    with _signals(stop, stopped_by):
        with open_run(read_entries(files, dedupe=dedupe), settings) as run:
            runs.append(run)
            summary = _drive(run, stopped_by, jsonl=jsonl, progress=progress)
        if not quiet:
            print("\n".join(summary.lines()), file=sys.stderr)
        code = summary.exit_code()
        if summary_json and not _write_summary(summary, summary_json) and code == ExitCode.OK:
            code = ExitCode.OUTPUT  # the run worked, but what was asked for is missing
    if run.abandoned:  # worker threads still hold sockets: leave without waiting for them
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, AttributeError):
                stream.flush()
        os._exit(code)
    return int(code)


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


def _drive(run: Run, stopped_by: list[str], *, jsonl: bool, progress: bool | None) -> Summary:
    """Consume the run: records to stdout, progress; the summary of what happened."""
    summary, bar = Summary(), Progress(progress)
    if stopped_by:  # a signal came while the run was being set up
        run.stop()
    try:
        for record in run:
            summary.add(record)
            bar.update(record, run.total)
            if jsonl and (failure := write_record(record)):
                jsonl = False
                stopped_by.append(failure)
                run.stop()
    finally:
        bar.close(run.total)
    summary.finish(stopped_by[0] if stopped_by else None)
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
        code = 70  # EX_SOFTWARE
    sys.exit(code)
