"""The command line's options, derived from the settings' declarations (`fetcher.declare`)
and the few options of the command line alone (`COMMAND_LINE`): typer reads the command's
signature, which is built here, so no option is written twice. `--help` lists them by group
(`GroupedCommand`); help and version are written to the Environment's standard output."""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from fetcher._version import __version__
from fetcher.declare import (
    GROUPS,
    INPUT,
    OTHER,
    OUTPUT,
    SAME,
    Declared,
    Flag,
    declarations,
    user_value,
)  # fmt: skip
from fetcher.environment import Environment
from fetcher.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
EPILOG = """\b
Examples:
  fetcher urls.txt --threads 5 --out pages/
  some-tool | fetcher --jsonl | jq -r 'select(.outcome=="failed").url'
  fetcher -i urls.txt --resume --summary-json run.json    # from cron: finish what is left

\b
Exit status: 0 every URL fetched (or not modified, fresh, skipped, or disallowed
by robots.txt), 1 some failed, 2 bad usage, 3 every URL failed, 70 internal
error (please report it), 74 records or --summary-json could not be written,
75 out dir in use by another run, 130/143 stopped by SIGINT/SIGTERM, 141 the
reader of --jsonl went away.
"""
ARGUMENT_HELP = (
    "Files of URLs, one per line ('#' comments and blank lines skipped), and URLs "
    "(http:// or https://). '-' or none reads standard input, as it arrives."
)
ARGUMENT_METAVAR = "[URL_FILE | URL]..."
# -h, --help is one of COMMAND_LINE: its text goes to the Environment's standard output
CONTEXT: dict[str, Any] = {"help_option_names": []}


class GroupedCommand(TyperCommand):
    """`--help` with the options in groups (their `rich_help_panel`, which needs no rich)."""

    def format_options(self, ctx: Any, formatter: Any) -> None:  # (typer's vendored click)
        rows: dict[str, list[tuple[str, str]]] = {group: [] for group in GROUPS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if param.param_type_name == "argument":
                record = (ARGUMENT_METAVAR, ARGUMENT_HELP)
            if record is not None:
                rows[getattr(param, "rich_help_panel", None) or OTHER].append(record)
        for group in GROUPS:
            if rows[group]:
                with formatter.section(group):
                    formatter.write_dl(rows[group])


def environment(ctx: typer.Context) -> Environment:
    """The streams this command was given (`main(..., obj=env)`)."""
    env: Environment = ctx.find_root().obj
    return env


def _say(ctx: typer.Context, text: str) -> None:
    """Text for standard output, and the command is done (exit 0)."""
    stdout = environment(ctx).stdout
    with contextlib.suppress(OSError, AttributeError, ValueError):
        stdout.write(text + "\n")  # type: ignore[union-attr]  # (None: closed)
        stdout.flush()  # type: ignore[union-attr]
    raise typer.Exit(0)


def version(ctx: typer.Context, value: bool) -> None:
    """-V: the version on standard output, as curl and wget print theirs."""
    if value:
        _say(ctx, f"fetcher {__version__}")


def show_help(ctx: typer.Context, value: bool) -> None:
    """-h: click's own help option, but written to the Environment's standard output."""
    if value and not ctx.resilient_parsing:
        _say(ctx, ctx.get_help())


# the options of the command line alone, in --help's order within their groups
INPUT_FILES = Flag(
    ("-i", "--input-file"),
    "A file of URLs, as if given as an argument (wget, aria2c); repeatable.",
    INPUT, "FILE", type=list[Path] | None, default=None, typer={"show_default": False},
)  # fmt: skip
COMMAND_LINE = (
    Flag(
        ("--jsonl",), "Write one JSON record per URL to stdout as each finishes.", OUTPUT,
        type=bool, default=False,
    ),
    Flag(
        ("--progress/--no-progress",), "Progress bar on stderr.", OUTPUT, type=bool | None,
        default=None, typer={"show_default": "when stderr is a terminal"},
    ),
    Flag(
        ("-q", "--quiet"),
        "Nothing on stderr but fatal errors: no bar (even with --progress), no lines, no summary.",
        OUTPUT, type=bool, default=False,
    ),
    Flag(
        ("-v", "--verbose"), "A line on stderr for every URL as it finishes, whatever its outcome.",
        OUTPUT, type=bool, default=False,
    ),
    Flag(
        ("--summary-json",), "Also write the summary as JSON to this file.", OUTPUT, "PATH",
        type=Path | None, default=None, typer={"dir_okay": False},
    ),
    Flag(
        ("-V", "--version"), "Print the version and exit.", type=bool, default=False,
        typer={"callback": version, "is_eager": True},
    ),
    Flag(
        ("-h", "--help"), "Show this message and exit.", type=bool, default=False,
        typer={"callback": show_help, "is_eager": True},
    ),
)  # fmt: skip


def declared_command(function: F) -> F:
    """`function(ctx, **values)` with the signature typer reads: the URL arguments, then every
    declared flag (inputs first, the settings' in their fields' order, the command line's own
    last), so that each option is written once, in its declaration."""
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        _argument(),
    ]
    parameters += [_parameter(*each) for each in flags()]
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in parameters}
    return function


def flags() -> Iterator[tuple[Flag, Any, Any]]:
    """Every flag of the command with its setting's type and default, in --help's order."""
    yield INPUT_FILES, None, None
    types = typing.get_type_hints(Settings)
    for name, default, declared in declarations(Settings):
        for flag in declared.flags:
            yield flag, types[name], default
    for flag in COMMAND_LINE:
        yield flag, None, None


def _argument() -> inspect.Parameter:
    argument = typer.Argument(
        metavar="URL_FILE | URL", show_default=False, help=ARGUMENT_HELP, rich_help_panel=INPUT
    )
    annotation = Annotated[list[str] | None, argument]
    return inspect.Parameter("arguments", _KEYWORD, default=None, annotation=annotation)


_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _parameter(flag: Flag, setting_type: Any, setting_default: Any) -> inspect.Parameter:
    """The command's parameter for one flag, as typer reads it."""
    default = setting_default if flag.default is SAME else flag.default
    kind = setting_type if flag.type is None else flag.type
    extra = dict(flag.typer)
    help_text = flag.help
    if flag.shown is not None:  # the default in the form the option takes
        help_text += f"  [default: {flag.shown(default)}]"
        extra["show_default"] = False
    if flag.parser is not None:
        extra["parser"] = _parser(flag.parser)
    option = typer.Option(
        *flag.names, rich_help_panel=flag.group, metavar=flag.metavar, help=help_text, **extra
    )
    return inspect.Parameter(
        flag.dest, _KEYWORD, default=default, annotation=Annotated[kind, option]
    )


def _parser(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A declared parser as typer calls it: a ValueError is the option's usage error, with the
    reason alone (click would echo the value, which may be a secret)."""

    def parser(text: Any) -> Any:
        try:
            return parse(str(text))  # (a default comes as a number)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parser


def settings_values(values: dict[str, Any]) -> dict[str, Any]:
    """The Settings keywords that the command line's values give: each setting that one of
    its flags was given for, as that flag's value means and the setting converts it."""
    given = {}
    for name, _, declared in declarations(Settings):
        meant = [(flag, _meaning(flag, values[flag.dest])) for flag in declared.flags]
        meant = [(flag, value) for flag, value in meant if value is not None]
        if meant:
            given[name] = _converted(declared, meant)
    return given


def _meaning(flag: Flag, value: Any) -> Any:
    return flag.means(value) if flag.means is not None else value


def _converted(declared: Declared, meant: list[tuple[Flag, Any]]) -> Any:
    """The one value given for a setting, converted; two of its flags at once are refused."""
    (flag, value), *others = meant
    if others:
        either = " or ".join(f.long for f, _ in meant)
        raise typer.BadParameter(f"use either {either}", param_hint=flag.long)
    try:
        return user_value(declared, value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag.long) from None
