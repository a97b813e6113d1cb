"""A run opens each page folder once (fetcher.store.folders) and still never writes through a
link, nor into a folder removed while it runs."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import fetcher
from fetcher.paths import path_for
from fetcher.store import Folders, save
from fetcher.store.pages import _open_folder
from tests.conftest import cli_env


def counting_walk(calls: list[tuple[str, ...]]):  # type: ignore[no-untyped-def]
    def walk(out: Path, names: list[str]) -> int:
        calls.append(tuple(names))
        return _open_folder(out, names)

    return walk


def test_pages_in_one_folder_walk_to_it_once(tmp_path) -> None:
    folders, calls = Folders(tmp_path), []
    walk = counting_walk(calls)
    first, kept = folders.get(("h", "p"), walk)
    again, kept_again = folders.get(("h", "p"), walk)
    assert (first, kept, kept_again) == (again, True, True) and calls == [("h", "p")]
    folders.close()


def test_no_more_folders_are_kept_than_asked(tmp_path) -> None:
    folders, calls = Folders(tmp_path, kept=2), []
    walk = counting_walk(calls)
    kept = [folders.get((name,), walk)[1] for name in "abc"]
    assert kept == [True, True, False]  # the third is the caller's to close
    folders.close()


def open_under(folder: Path) -> list[str]:
    """What this process holds open under `folder` (its kept-alive connections aside)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # (the listing's own descriptor, closed since)
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held


def test_a_run_leaves_no_folder_open(server, tmp_path) -> None:
    urls = [server.url(f"/page/{folder}/{i}") for folder in "ab" for i in range(3)]
    records = list(fetcher.fetch(urls, out=tmp_path / "out", threads=2, retries=0))
    assert all(r.outcome == "fetched" for r in records)
    assert len({r.path.rpartition("/")[0] for r in records}) == 2  # (two folders)
    assert open_under(tmp_path / "out") == []


def test_a_folder_removed_while_the_run_goes_on_is_made_again(tmp_path) -> None:
    out = tmp_path / "out"
    folders = Folders(out)
    save(out, "h/p/a.html", b"a", folders=folders)
    (out / "h" / "p" / "a.html").unlink()
    (out / "h" / "p").rmdir()
    save(out, "h/p/b.html", b"b", folders=folders)  # the kept one is gone: a fresh walk
    assert (out / "h" / "p" / "b.html").read_bytes() == b"b"
    save(out, "h/p/c.html", b"c", folders=folders)  # and that one is kept from then on
    assert sorted(os.listdir(out / "h" / "p")) == ["b.html", "c.html"]
    folders.close()


def test_a_link_put_where_a_kept_folder_was_is_not_written_through(tmp_path) -> None:
    """The kept descriptor is the folder fetcher made: moved away and replaced by a link, the
    link leads nowhere fetcher writes."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    folders = Folders(out)
    save(out, "h/a.html", b"a", folders=folders)
    (out / "h").rename(tmp_path / "moved")
    (out / "h").symlink_to(elsewhere)
    save(out, "h/b.html", b"b", folders=folders)
    assert list(elsewhere.iterdir()) == []
    assert sorted(os.listdir(tmp_path / "moved")) == ["a.html", "b.html"]
    folders.close()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pages_that_fail_in_a_kept_folder_cost_no_descriptor_each(tmp_path) -> None:
    """A write that fails in a folder that is still there (a page's name taken by a folder
    here; ENOSPC or EACCES alike) fails that page alone: the kept descriptor stays, and no
    descriptor is put aside per failed page (a run of many such pages ran out of them, and
    then every fetch and save of the run failed with EMFILE)."""
    out = tmp_path / "out"
    folders = Folders(out)
    save(out, "h/first.html", b"x", folders=folders)
    for number in range(40):
        (out / "h" / f"p{number}.html" / "taken").mkdir(parents=True)
    before = open_descriptors()
    for number in range(40):
        with pytest.raises(IsADirectoryError):
            save(out, f"h/p{number}.html", b"y", folders=folders)
    assert open_descriptors() == before
    assert folders.retired == [] and ("h",) in folders.fds
    save(out, "h/last.html", b"z", folders=folders)  # the folder still takes pages
    assert (out / "h" / "last.html").read_bytes() == b"z"
    folders.close()


def test_a_kept_folder_removed_and_replaced_by_a_link_fails_its_pages_until_it_is_gone(
    tmp_path,
) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    folders = Folders(out)
    save(out, "h/a.html", b"a", folders=folders)
    (out / "h" / "a.html").unlink()
    (out / "h").rmdir()
    (out / "h").symlink_to(elsewhere)
    for name in ("b", "c"):
        with pytest.raises(OSError, match="symbolic link"):
            save(out, f"h/{name}.html", b"x", folders=folders)
    assert list(elsewhere.iterdir()) == []
    (out / "h").unlink()
    save(out, "h/d.html", b"d", folders=folders)  # a folder made again, and kept
    assert os.listdir(out / "h") == ["d.html"] and len(folders.retired) == 1
    folders.close()


def test_many_pages_that_cannot_be_saved_in_one_folder_fail_alone(server, tmp_path) -> None:
    """One host's folder where no page can be saved (here each page's name is taken by a
    folder; a folder made read-only, or a full disk, alike) fails those pages and no other:
    with a descriptor put aside per failed page, 150 of them ran a process allowed 96 out of
    descriptors, and every other page of the run failed too ("Too many open files", exit
    3)."""
    out = tmp_path / "out"
    taken = [server.url(f"/page/taken{i}") for i in range(150)]
    fine = [server.url(f"/page/fine{i}") for i in range(20)]
    for url in taken:
        (out / path_for(url, "text/html; charset=utf-8") / "taken").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "fetcher", "-", "-o", str(out), "--jsonl", "-t", "2", "-q"],
        input="\n".join(taken + fine) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96)),
    )
    records = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert result.returncode == 1, result.stderr
    assert {records[url]["error"] for url in taken} == {"cannot save the page: Is a directory"}
    assert all(records[url]["outcome"] == "fetched" for url in fine)
