"""The command line's options, declared once each: name, help, group, and the default, which
is the library's (`Settings`). `--help` lists them by group (`GroupedCommand`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from fetcher._version import __version__
from fetcher.settings import DAY, Settings, format_size, parse_size

DEFAULTS = Settings()
INPUT, OUTPUT, CONCURRENCY, HTTP, RERUNS = "Input", "Output", "Concurrency", "HTTP", "Re-runs"
GROUPS = (INPUT, OUTPUT, CONCURRENCY, HTTP, RERUNS, "Other")

EPILOG = """\b
Examples:
  fetcher urls.txt --threads 5 --out pages/
  some-tool | fetcher --jsonl | jq -r 'select(.outcome=="failed").url'
  fetcher -i urls.txt --resume --summary-json run.json    # from cron: finish what is left

\b
Exit status: 0 every URL fetched (or not modified, or skipped), 1 some failed,
2 bad usage, 3 every URL failed, 70 internal error (please report it),
74 records or --summary-json could not be written, 75 out dir in use by another
run, 130/143 stopped by SIGINT/SIGTERM, 141 the reader of --jsonl went away.
"""


class GroupedCommand(TyperCommand):
    """`--help` with the options in groups (their `rich_help_panel`, which needs no rich)."""

    def format_options(self, ctx: Any, formatter: Any) -> None:  # (typer's vendored click)
        rows: dict[str, list[tuple[str, str]]] = {group: [] for group in GROUPS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if param.param_type_name == "argument":
                record = (ARGUMENT_METAVAR, ARGUMENT_HELP)
            if record is not None:
                rows[getattr(param, "rich_help_panel", None) or "Other"].append(record)
        for group in GROUPS:
            if rows[group]:
                with formatter.section(group):
                    formatter.write_dl(rows[group])


def version(value: bool) -> None:
    if value:
        with contextlib.suppress(OSError, AttributeError):
            print(f"fetcher {__version__}", flush=True)
        raise typer.Exit(0)


def size(text: str | int) -> int:
    try:
        return parse_size(str(text))  # (the default comes as a number)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _option(*names: str, group: str, **kwargs: Any) -> Any:
    return typer.Option(*names, rich_help_panel=group, **kwargs)


ARGUMENT_HELP = (
    "Files of URLs, one per line ('#' comments and blank lines skipped), and URLs "
    "(http:// or https://). '-' or none reads standard input, as it arrives."
)
ARGUMENT_METAVAR = "[URL_FILE | URL]..."
Sources = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="URL_FILE | URL", show_default=False, help=ARGUMENT_HELP, rich_help_panel=INPUT
    ),
]
InputFiles = Annotated[
    list[Path] | None,
    _option(
        "-i", "--input-file", group=INPUT, metavar="FILE", show_default=False,
        help="A file of URLs, as if given as an argument (wget, aria2c); repeatable.",
    ),
]  # fmt: skip
Dedupe = Annotated[
    bool,
    _option("--dedupe/--no-dedupe", group=INPUT, help="Fetch a URL listed twice only once."),
]
Out = Annotated[
    Path,
    _option("-o", "--out", group=OUTPUT, metavar="DIR", help="Where pages go; made if missing."),
]
Jsonl = Annotated[
    bool,
    _option(
        "--jsonl", group=OUTPUT, help="Write one JSON record per URL to stdout as each finishes."
    ),
]
Raw = Annotated[
    bool,
    _option("--raw", group=OUTPUT, help="Save bodies byte for byte; text is not made UTF-8."),
]
Progress = Annotated[
    bool | None,
    _option(
        "--progress/--no-progress", group=OUTPUT, show_default="when stderr is a terminal",
        help="Progress bar on stderr.",
    ),
]  # fmt: skip
Quiet = Annotated[bool, _option("-q", "--quiet", group=OUTPUT, help="No summary.")]
SummaryJson = Annotated[
    Path | None,
    _option(
        "--summary-json", group=OUTPUT, dir_okay=False, metavar="PATH",
        help="Also write the summary as JSON to this file.",
    ),
]  # fmt: skip
Threads = Annotated[
    int,
    _option(
        "-t", "--threads", group=CONCURRENCY, min=1, metavar="N",
        help="Concurrent fetches (per process with --processes).",
    ),
]  # fmt: skip
Processes = Annotated[
    int,
    _option(
        "-p", "--processes", group=CONCURRENCY, min=0, show_default=False, metavar="N",
        help="Use N worker processes, each running --threads threads (N x threads in flight).",
    ),
]  # fmt: skip
Dask = Annotated[
    str | None,
    _option(
        "--dask", group=CONCURRENCY, metavar="ADDRESS", show_default=False,
        help="Run the fetches on a Dask cluster: a scheduler address (tcp://host:8786), "
        "'env' for $DASK_SCHEDULER_ADDRESS, or 'local' for one on this machine. Pages are "
        "saved here. Needs the dask extra.",
    ),
]  # fmt: skip
PerHost = Annotated[
    int | None,
    _option(
        "--per-host", group=CONCURRENCY, min=1, metavar="N",
        help="At most N requests in flight to one host.",
    ),
]  # fmt: skip
Delay = Annotated[
    float,
    _option(
        "--delay", group=CONCURRENCY, min=0.0, max=DAY, metavar="SECONDS",
        help="At least this long between the starts of two requests to one host.",
    ),
]  # fmt: skip
Retries = Annotated[
    int,
    _option(
        "--retries", group=HTTP, min=0, metavar="N",
        help="Retries of a transient failure after the first try.",
    ),
]  # fmt: skip
Timeout = Annotated[
    float,
    _option(
        "--timeout", group=HTTP, min=0.001, max=DAY, metavar="SECONDS",
        help="Seconds for connect, for each read, and for one whole attempt.",
    ),
]  # fmt: skip
MaxSize = Annotated[
    int,
    _option(
        "--max-size", group=HTTP, parser=size, metavar="BYTES", show_default=False,
        help="Largest body accepted, after decompression; K, M, G suffixes.  "
        f"[default: {format_size(DEFAULTS.max_size)}]",
    ),
]  # fmt: skip
Headers = Annotated[
    list[str] | None,
    _option(
        "-H", "--header", group=HTTP, metavar="'Name: value'", show_default=False,
        help="Extra request header; repeatable.",
    ),
]  # fmt: skip
UserAgent = Annotated[
    str, _option("-A", "--user-agent", group=HTTP, metavar="TEXT", help="User-Agent header.")
]
Proxy = Annotated[
    str | None,
    _option(
        "--proxy", group=HTTP, metavar="URL", show_default=False,
        help="Send every request through this proxy (else the *_proxy variables).",
    ),
]  # fmt: skip
Cookies = Annotated[
    Path | None,
    _option(
        "--cookies", group=HTTP, metavar="FILE", show_default=False,
        help="Load cookies from a Netscape cookies.txt (wget --load-cookies, curl -b); "
        "otherwise each URL starts with none.",
    ),
]  # fmt: skip
Insecure = Annotated[
    bool, _option("--insecure", group=HTTP, help="Do not verify TLS certificates.")
]
CaBundle = Annotated[
    Path | None,
    _option(
        "--ca-bundle", group=HTTP, exists=True, dir_okay=False, readable=True, metavar="PATH",
        help="Verify TLS against this CA bundle (PEM) alone, not the system's trust store.",
    ),
]  # fmt: skip
Resume = Annotated[
    bool,
    _option("--resume", group=RERUNS, help="Skip URLs the out dir's index holds as fetched."),
]
Refresh = Annotated[
    bool,
    _option(
        "--refresh", group=RERUNS,
        help="Conditional re-fetch (ETag / Last-Modified); a 304 keeps the saved page.",
    ),
]  # fmt: skip
Version = Annotated[
    bool,
    typer.Option(
        "-V", "--version", callback=version, is_eager=True, help="Print the version and exit."
    ),
]
