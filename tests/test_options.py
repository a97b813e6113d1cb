"""Each setting is declared once (a Settings field and its `setting(...)`): the command line,
its --help, README's options table and `fetcher.fetch` are checked against the declarations,
and --max-redirect shows a setting added in one declaration."""

from __future__ import annotations

import inspect
import json
import re

import pytest

import fetcher
from fetcher.declare import declarations, user_value
from fetcher.errors import ExitCode
from fetcher.http import too_many_redirects
from fetcher.settings import Settings
from tests.conftest import ROOT, invoke

OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.parametrize(
    ("args", "hops", "outcome"),
    [
        ([], 20, "fetched"),  # the default, as wget's
        ([], 21, "failed"),
        (["--max-redirect", "5"], 5, "fetched"),
        (["--max-redirect", "4"], 5, "failed"),
        (["--max-redirect", "0"], 1, "failed"),
    ],
)
def test_max_redirect_limits_a_redirect_chain(server, tmp_path, args, hops, outcome) -> None:
    limit = int(args[1]) if args else 20
    result = invoke(*args, "--jsonl", "-o", str(tmp_path / "o"), server.url(f"/redirect/{hops}"))
    (record,) = records(result.stdout)
    assert record["outcome"] == outcome, record
    if outcome == "fetched":
        assert record["final_url"] == server.url("/page/redirected") and result.returncode == 0
        assert server.recorder.total() == hops + 1  # every hop, and the page
    else:
        assert record["error"] == too_many_redirects(limit) and record["status"] == 302
        assert result.returncode == ExitCode.ALL_FAILED and record["attempts"] == 1
        assert server.recorder.total() == limit + 1  # the first request, and `limit` hops


def test_max_redirect_below_0_is_bad_usage(tmp_path) -> None:
    result = invoke("--max-redirect", "-1", "-o", str(tmp_path / "o"))
    assert result.returncode == ExitCode.USAGE and "'--max-redirect'" in result.stderr


def help_options() -> set[str]:
    """The options `fetcher --help` lists (--help included), as written in its first column."""
    text = invoke("--help").stdout
    found = set()
    for line in text.splitlines():
        if match := re.match(r"^  (-\S.*?)(?:  |$)", line):
            found.update(OPTION.findall(match.group(1)))
    return found


def readme_options() -> set[str]:
    """The options README's options table lists: the table whose rows start with "| `-",
    wherever it stands; each row's first cell, e.g. `-o, --out DIR`."""
    tables, table = [], []
    for line in [*(ROOT / "README.md").read_text().splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            tables.append(table)
            table = []
    rows = max(([r for r in t if r.startswith("| `-")] for t in tables), key=len)
    found = set()
    for row in rows:
        for code in re.findall(r"`([^`]*)`", row.split("|")[1]):
            found.update(OPTION.findall(code))
    return found


def test_readme_and_help_list_the_same_options() -> None:
    listed, helped = readme_options(), help_options()
    assert "--max-redirect" in helped and "--dedupe" in helped and "-A" in helped
    assert listed - helped == set(), "in README's options table, not in --help"
    assert helped - listed == set(), "in --help, not in README's options table"


def test_every_declared_flag_is_an_option_of_the_command() -> None:
    declared = {
        name for _, _, each in declarations(Settings) for flag in each.flags for name in flag.names
    }
    spelled = {part for name in declared for part in name.split("/")}
    assert spelled <= help_options()


def test_fetch_takes_each_declared_setting_with_its_default() -> None:
    """fetch's typed signature is written out for users' type checkers; it must say what the
    declarations say: one keyword per setting declared for the API, in the fields' order,
    whose default, taken as a user's value, is the setting's default."""
    parameters = list(inspect.signature(fetcher.fetch).parameters.values())[1:]  # urls
    declared = [(name, default, each) for name, default, each in declarations(Settings) if each.api]
    expected = "\n".join(f"    {name}: ... = _D.{name}," for name, _, _ in declared)
    assert [p.name for p in parameters] == [name for name, _, _ in declared], expected
    for parameter, (name, default, each) in zip(parameters, declared, strict=True):
        assert user_value(each, parameter.default) == default, name
