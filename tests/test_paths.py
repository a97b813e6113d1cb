from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.paths import extension_for, path_for
from fetcher.store import save
from fetcher.urls import canonical


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("http://example.com/", "example.com/index~*.html"),
        ("http://example.com", "example.com/index~*.html"),
        ("https://Example.COM/wiki/Python", "example.com/wiki/Python~*.html"),
        ("http://example.com/a/b/report.PDF", "example.com/a/b/report~*.pdf"),
        ("http://example.com/index.php?id=5", "example.com/index.php_id=5~*.html"),
        ("http://example.com:8080/x.json", "example.com_8080/x~*.json"),
        ("http://xn--bcher-kva.de/stra%C3%9Fe", "bücher.de/straße~*.html"),
        ("http://[::1]:8000/a", "__1_8000/a~*.html"),
        ("http://user:secret@example.com/p", "example.com/p~*.html"),
        ("http://example.com/~alice/home.html", "example.com/_alice/home~*.html"),
        ("http://example.com/.hidden/.env", "example.com/_hidden/_env~*.html"),
    ],
)
def test_readable_names(url: str, pattern: str) -> None:
    assert PurePosixPath(path_for(url)).match(pattern), path_for(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/../../etc/passwd",
        "http://example.com/%2e%2e/%2e%2e/etc/passwd",
        "http://example.com/..%2f..%2fetc%2fpasswd",
        "http://example.com/a\\..\\..\\b",
        "http://example.com/%00/x",
        "http://example.com/" + "/".join(["..."] * 50),
        "http://example.com/" + "a" * 5000,
        "http://example.com/" + "/".join(["d" * 200] * 40) + "/file",
    ],
)
def test_hostile_paths_stay_inside(url: str, tmp_path: Path) -> None:
    relpath = path_for(url)
    assert_safe(relpath)
    save(tmp_path, relpath, b"x")  # the file system takes it
    assert (tmp_path / relpath).read_bytes() == b"x"


def test_urls_differing_in_query_case_or_credentials() -> None:
    urls = [
        "http://a.example/x?q=1",
        "http://a.example/x?q=2",
        "http://a.example/X",
        "http://a.example/x",
        "http://a.example/x/",
        "http://a.example/x?q=1&r=2",
        "http://a.example/x?r=2&q=1",  # parameters keep their order: it may mean something
    ]
    assert len({path_for(u) for u in urls}) == len(urls)
    # credentials never reach a path: not in the name, nor in what the hash covers
    assert "hunter2" not in path_for("http://user:hunter2@a.example/page")
    assert path_for("http://u:hunter2@a.example/x") == path_for("http://v:other@a.example/x")


def test_same_url_same_path() -> None:
    assert path_for("http://a.example/x?y=1") == path_for("http://a.example/x?y=1")


SPELLINGS = [
    "http://a.example/p/9.html",
    "HTTP://A.Example/p/9.html",
    "http://a.example/p/9.html#top",
    "http://a.example/p/./9.html",
    "http://a.example/p/%39.html",
    "http://a.example/./p/9.html",
    "http://a.example/p/9.html?",
    "http://a.example:80/p/9.html",
    "http://a.example/q/../p/9.html",
]


def test_every_spelling_of_a_url_gets_one_path() -> None:
    assert {canonical(u) for u in SPELLINGS} == {"http://a.example/p/9.html"}
    assert len({path_for(u) for u in SPELLINGS}) == 1


@pytest.mark.parametrize(
    ("url", "canonical_form"),
    [
        ("https://a.example:443", "https://a.example/"),
        ("https://a.example:8443/", "https://a.example:8443/"),
        ("http://a.example/x?a=%2f&b=%7e", "http://a.example/x?a=%2F&b=~"),
        ("http://User:PW@A.example/", "http://a.example/"),  # credentials make no other page
        ("http://a.example:8\\@b.example/x", "http://a.example:8/%5C@b.example/x"),  # urllib3's
        ("http://a.example:8#x@b.example/", "http://a.example:8/"),  # reading: where it goes
        ("http://[::1]:80/a/b/..", "http://[::1]/a/"),
        ("http://a.example/%2e%2e/x", "http://a.example/x"),
        ("http://a.example/x?b=1&a=2", "http://a.example/x?b=1&a=2"),
    ],
)
def test_canonical_form(url: str, canonical_form: str) -> None:
    assert canonical(url) == canonical_form


@pytest.mark.parametrize(
    ("url", "content_type", "pattern"),
    [
        ("http://a.example/report", "application/pdf", "a.example/report~*.pdf"),
        ("http://a.example/logo", "image/png", "a.example/logo~*.png"),
        (
            "http://a.example/api/items",
            "application/json; charset=utf-8",
            "a.example/api/items~*.json",
        ),
        ("http://a.example/feed", "application/rss+xml", "a.example/feed~*.xml"),
        ("http://a.example/", "text/html", "a.example/index~*.html"),
        ("http://a.example/", None, "a.example/index~*.html"),
        ("http://a.example/notes", "text/x-unknown", "a.example/notes~*.txt"),
        ("http://a.example/blob", "application/x-unknown", "a.example/blob~*.bin"),
        ("http://a.example/img.php?id=3", "image/jpeg", "a.example/img.php_id=3~*.jpg"),
        ("http://a.example/paper.pdf", "text/html", "a.example/paper~*.pdf"),  # its own wins
    ],
)
def test_extension_from_the_content_type_when_the_url_has_none(url, content_type, pattern) -> None:
    assert PurePosixPath(path_for(url, content_type)).match(pattern), path_for(url, content_type)


def test_urls_that_masking_makes_alike_keep_their_own_files() -> None:
    """Records mask credentials (lossy); file names come from the URLs themselves."""
    alike = [
        "http://a.example/x?repo=https://alice@example.com/r",
        "http://a.example/x?repo=https://bob@example.com/r",
        "http://127.0.0.1:8#a@evil.example/",
        "http://localhost:8#b@evil.example/",
        "http://127.0.0.1:8\\@evil.example/one",
        "http://localhost:8\\@evil.example/one",
    ]
    paths = [path_for(u) for u in alike]
    assert len(set(paths)) == len(paths)
    assert not any("alice" in p or "bob" in p for p in paths)
    assert [p.split("/")[0] for p in paths[2:]] == ["127.0.0.1_8", "localhost_8"] * 2


def test_extensions_come_from_pythons_table_not_the_systems() -> None:
    assert extension_for("application/xml") == ".xml" and extension_for("text/plain") == ".txt"


def assert_safe(relpath: str) -> None:
    parts = PurePosixPath(relpath).parts
    assert not PurePosixPath(relpath).is_absolute()
    assert all(part not in ("", ".", "..") for part in parts)
    assert all(len(part.encode("utf-8", "surrogatepass")) < 255 for part in parts)
    assert all("\\" not in part and "\0" not in part for part in parts)
    assert "~" in parts[-1] and all("~" not in part for part in parts[:-1])
    assert not parts[0].startswith(".")
    assert os.path.normpath(relpath) == relpath


segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
urls = st.builds(
    lambda scheme, host, segs, query: f"{scheme}://{host}/{'/'.join(segs)}{query}",
    st.sampled_from(["http", "https"]),
    st.sampled_from(["a.example", "b.example:8080", "xn--bcher-kva.de", "[::1]"]),
    st.lists(segment, max_size=6),
    st.one_of(st.just(""), st.text(max_size=30).map(lambda q: "?" + q)),
)


@settings(max_examples=400, deadline=None)
@given(urls)
def test_every_path_is_safe(url: str) -> None:
    assert_safe(path_for(url))


@settings(max_examples=300, deadline=None)
@given(st.lists(urls, min_size=2, max_size=20, unique_by=canonical))
def test_paths_are_injective_and_files_never_block_directories(batch: list[str]) -> None:
    paths = [path_for(u) for u in batch]
    assert len(set(paths)) == len(paths)
    directories = {str(PurePosixPath(p).parent) for p in paths}
    assert not directories & set(paths)
