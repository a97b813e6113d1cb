"""Hints for people who come with wget, curl and aria2c habits: what fetcher calls an option
they know, why a bare host was not fetched, why --out takes a folder, and the command that
finishes a stopped run. Functions of text (and one look at the disk for --out): the CLI puts
them in its messages."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from fetcher.urls import redact_line

_OUTPUT_FILE = (
    "fetcher has no single output file: each page is saved under --out DIR at a path made "
    "from its URL (records on standard output: --jsonl)"
)
# a well-known option of wget, curl or aria2c → (whose, fetcher's equivalent or why none)
EQUIVALENTS: dict[str, tuple[str, str]] = {
    "--wait": ("wget", "--delay SECONDS"),
    "-w": ("wget", "--delay SECONDS"),
    "--random-wait": ("wget", "--delay A-B (a random wait in that range, e.g. --delay 1-3)"),
    "--tries": ("wget", "--retries N (retries after the first try)"),
    "--retry": ("curl", "--retries N"),
    "--max-tries": ("aria2c", "--retries N (retries after the first try)"),
    "--timestamping": ("wget", "--refresh"),
    "-N": ("wget", "--refresh"),
    "--max-redirs": ("curl", "--max-redirect N"),
    "--continue": ("wget", "--resume (skips URLs already fetched; no partial files to continue)"),
    "-c": ("wget", "--resume (skips URLs already fetched; no partial files to continue)"),
    "-U": ("wget", "-A, --user-agent TEXT"),
    "--output-document": ("wget", _OUTPUT_FILE),
    "-O": ("wget and curl", _OUTPUT_FILE),
    "--output": ("curl", _OUTPUT_FILE),
    "--limit-rate": (
        "wget and curl",
        "none: it does not limit bandwidth (--delay spaces "
        "the requests to one host, --per-host N bounds them)",
    ),
    "--spider": ("wget", "none: what fetcher fetches, it saves"),
    "--directory-prefix": ("wget", "-o, --out DIR"),
    "-P": ("wget", "-o, --out DIR"),
    "--no-check-certificate": ("wget", "--insecure"),
    "-k": ("curl", "--insecure"),
    "--cacert": ("curl", "--ca-bundle PATH"),
    "--ca-certificate": ("wget", "--ca-bundle PATH"),
    "-x": ("curl", "--proxy URL"),
    "--load-cookies": ("wget", "--cookies FILE"),
    "-b": ("curl", "--cookies FILE"),
    "--cookie": ("curl", "--cookies FILE"),
    "-s": ("curl", "-q, --quiet"),
    "--silent": ("curl", "-q, --quiet"),
    "-j": ("aria2c", "-t, --threads N"),
    "--max-concurrent-downloads": ("aria2c", "-t, --threads N"),
    "--connect-timeout": ("curl", "--timeout SECONDS"),
    "--max-time": ("curl", "--timeout SECONDS (for one whole attempt)"),
    "--read-timeout": ("wget", "--timeout SECONDS"),
    "-T": ("wget", "--timeout SECONDS"),
    "--max-filesize": ("curl", "--max-size BYTES"),
    "--location": ("curl", "none needed: redirects are always followed (--max-redirect N)"),
    "-L": ("curl", "none needed: redirects are always followed (--max-redirect N)"),
    "--recursive": ("wget", "none: it fetches the URLs it is given and follows no links"),
    "--compressed": ("curl", "none needed: bodies are always asked for compressed and decoded"),
    "--netrc": ("curl", "none needed: ~/.netrc is read (docs/usage.md)"),
    "--user": (
        "curl",
        "none: credentials come from ~/.netrc (docs/usage.md) or -H 'Authorization: ...'",
    ),
}
# a host, perhaps with a port and a path, that someone meant as a URL
_HOST = re.compile(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]+(?::\d+)?(?:/\S*)?")
# names that are files more likely than hosts: urls.txt is a list, not a site in Thailand
FILE_SUFFIXES = frozenset(
    (".html", ".htm", ".xhtml", ".txt", ".text", ".list", ".lst", ".urls", ".csv", ".tsv",
     ".json", ".jsonl", ".xml", ".pdf", ".log", ".gz", ".zip", ".bz2", ".xz", ".warc", ".md",
     ".php", ".asp", ".jpg", ".png")
)  # fmt: skip


def option_hint(option: str) -> str | None:
    """What fetcher calls a wget, curl or aria2c option it does not know, or None."""
    known = EQUIVALENTS.get(option.split("=", 1)[0])
    if known is None:
        return None
    whose, equivalent = known
    if equivalent.startswith("none needed: "):
        return f"{whose} {option} is not needed: {equivalent.removeprefix('none needed: ')}"
    if equivalent.startswith("none: "):
        return f"{whose} {option} has no equivalent: {equivalent.removeprefix('none: ')}"
    if equivalent == _OUTPUT_FILE:
        return f"{whose} {option}: {equivalent}"
    return f"{whose} {option} is fetcher's {equivalent}"


def url_meant(name: str) -> str | None:
    """The URL someone meant by a list file name that is a host (`example.com`), or None."""
    if not _HOST.fullmatch(name) or Path(name.split("/", 1)[0]).suffix.lower() in FILE_SUFFIXES:
        return None
    return f"https://{name}" if "/" in name else f"https://{name}/"


def out_problem(out: Path) -> str | None:
    """Why `-o out` is not a folder for pages, or None: `-` (pages cannot go to standard
    output) or a file's name (wget's -O, curl's -o name one file; fetcher saves many)."""
    given = str(out)
    if given == "-":
        return (
            "pages cannot go to standard output: --out takes a folder "
            "(for records on standard output, use --jsonl)"
        )
    if out.suffix.lower() in FILE_SUFFIXES and not out.is_dir():
        return (
            f"{given} looks like a file's name, but --out takes a folder: each page is saved "
            "under it at a path made from its URL (wget -O and curl -o write one file; "
            "fetcher has none). To use a folder of that name, make it first: "
            f"mkdir {shlex.quote(given)}"
        )
    return None


def resume_command(argv: Sequence[str]) -> str:
    """The command that finishes a stopped run: the same, with --resume (credentials and
    header values masked, for a log). After --refresh, the same command again."""
    words = ["fetcher", *_masked(argv)]
    if "--resume" not in words and "--refresh" not in words:
        words.append("--resume")
    return shlex.join(words)


def _masked(argv: Sequence[str]) -> list[str]:
    """The arguments with anything secret masked: credentials in URLs, header values."""
    shown, header_next = [], False
    for word in argv:
        if header_next:
            word = _header_masked(word)
        elif word.startswith("--header="):
            word = "--header=" + _header_masked(word.removeprefix("--header="))
        elif word.startswith("-H") and len(word) > 2:
            word = "-H" + _header_masked(word[2:])
        header_next = word in ("-H", "--header")
        shown.append(redact_line(word))
    return shown


def _header_masked(header: str) -> str:
    name, sep, value = header.partition(":")
    return f"{name}: ***" if sep and value.strip() else header
