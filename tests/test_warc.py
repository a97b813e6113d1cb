"""--warc: WARC files checked by the reference tools (warcio check and index), replayed by
pywb in-process, revisits on --refresh, credentials masked, files whole after kill -9.

warcio reads Content-Encoding br only with brotlipy's API (webrecorder/warcio#73), which
fetcher's brotli (Google's) does not have: `warcio` runs here with a two-line adapter."""

from __future__ import annotations

import base64
import fcntl
import gzip
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import pytest

from fetcher.api import open_run
from fetcher.inputs import url_batches
from fetcher.records import Record
from fetcher.settings import Settings
from fetcher.store.warc import recover
from tests.conftest import ROOT, cli_env, invoke, old_index
from tests.server import CHARSET_PAGES, CHUNKS, ENCODED_TEXT, PNG, FaultServer, page_body

pytest.importorskip("warcio")
WARCIO = """
import sys, brotli
from warcio import bufferedreaders
class Br:
    def __init__(self): self.d, self.unused_data = brotli.Decompressor(), None
    def decompress(self, data): return self.d.process(data)
bufferedreaders.BufferedReader.DECOMPRESSORS["br"] = Br
from warcio.cli import main
main(sys.argv[1:])
"""
CHARSETS = ("gbk-meta", "sjis-http-equiv", "cp1251-header", "utf16-bom")
# path → (status, body after Content-Encoding) as the server sent it
EXPECTED: dict[str, tuple[int, bytes]] = {
    "/page/a": (200, page_body("a")),
    "/binary": (200, PNG),
    "/encoded/gzip": (200, ENCODED_TEXT),
    "/encoded/br": (200, ENCODED_TEXT),
    "/chunked": (200, b"".join(CHUNKS)),
    "/status/404": (404, b""),
    "/flaky/1/503/k": (200, page_body("k")),
    "/redirect/2": (302, b""),
    "/redirect/1": (302, b""),
    "/page/redirected": (200, page_body("redirected")),
    **{f"/charset/{name}": (200, CHARSET_PAGES[name][1]) for name in CHARSETS},
}
LISTED = [p for p in EXPECTED if p not in ("/redirect/1", "/page/redirected")]


def run(server: FaultServer, paths: list[str], tmp: Path, **values: Any) -> list[Record]:
    settings = Settings(
        out=tmp / "out", warc=str(tmp / "arc" / "crawl"), backoff=0, timeout=5, **values
    )
    with open_run(url_batches([server.url(p) for p in paths]), settings) as records:
        return list(records)


def warcio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WARCIO, *args], capture_output=True, text=True, timeout=60
    )


def records_of(path: Path) -> Iterator[Any]:
    """Each record, its content read (as `content`: after chunking and Content-Encoding)."""
    from warcio.archiveiterator import ArchiveIterator

    with path.open("rb") as stream:
        for record in ArchiveIterator(stream):
            record.content = record.raw_stream.read()
            yield record


def warcs(tmp: Path) -> list[Path]:
    return sorted((tmp / "arc").glob("*.warc.gz"))


def test_every_exchange_is_a_checked_indexed_record(server: FaultServer, tmp_path: Path) -> None:
    records = run(server, LISTED, tmp_path)
    assert Counter(r.outcome for r in records) == {"fetched": len(LISTED) - 1, "failed": 1}
    files = warcs(tmp_path)
    assert files and not list((tmp_path / "arc").glob("*.open"))
    checked = warcio("check", "-v", *map(str, files))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = warcio("index", "-f", "warc-type,warc-target-uri,http:status", *map(str, files))
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    kinds = Counter((d["warc-type"], d.get("warc-target-uri")) for d in lines)
    for path in EXPECTED:
        exchanges = 2 if path.startswith("/flaky") else 1  # the 503, then the page
        assert kinds["request", server.url(path)] == exchanges, path
        assert kinds["response", server.url(path)] == exchanges, path
    assert [d["warc-type"] for d in lines].count("warcinfo") == len(files)
    archived = {}  # the latest answer archived for each URL: as the server sent it
    for record in (r for f in files for r in records_of(f) if r.rec_type == "response"):
        body, coding = record.content, record.http_headers.get_header("Content-Encoding")
        body = {"gzip": gzip.decompress, "br": brotli.decompress}.get(coding, bytes)(body)
        archived[record.rec_headers["WARC-Target-URI"]] = (
            int(record.http_headers.get_statuscode()),
            body,
        )
    assert archived == {server.url(path): answer for path, answer in EXPECTED.items()}


def test_records_say_what_the_tools_expect(server: FaultServer, tmp_path: Path) -> None:
    run(server, ["/chunked", "/page/a"], tmp_path)
    (file,) = warcs(tmp_path)
    records = list(records_of(file))
    assert records[0].rec_type == "warcinfo"
    info = records[0].content.decode()
    assert "software: fetcher/" in info and "fetcher-options:" in info
    ids = {r.rec_headers["WARC-Record-ID"]: r for r in records}
    for record in records[1:]:
        headers = record.rec_headers
        assert headers.protocol == "WARC/1.1"
        assert headers["WARC-Target-URI"].startswith("http://127.0.0.1:")  # plain, no <>
        assert headers["WARC-IP-Address"] == "127.0.0.1"
        assert headers["WARC-Block-Digest"].startswith("sha1:")
        if record.rec_type == "request":
            answer = ids[headers["WARC-Concurrent-To"]]
            assert answer.rec_headers["WARC-Target-URI"] == headers["WARC-Target-URI"]
        else:
            assert headers["WARC-Payload-Digest"].startswith("sha1:")
    chunked = next(
        r
        for r in records
        if r.rec_type == "response" and "chunked" in r.rec_headers["WARC-Target-URI"]
    )
    assert chunked.http_headers.get_header("Transfer-Encoding") is None
    assert chunked.http_headers.get_header("X-Archive-Orig-Transfer-Encoding") == "chunked"
    assert chunked.http_headers.get_header("Content-Length") == str(len(b"".join(CHUNKS)))
    assert chunked.content == b"".join(CHUNKS)


# pywb's apps patch the whole process with gevent when imported: they run in a process
# of their own, which replays each (url, timestamp) asked and answers in JSON.
PYWB = """
import base64, json, sys
from pywb.apps.frontendapp import FrontEndApp
from werkzeug.test import Client
client = Client(FrontEndApp(config_file=sys.argv[1]))
answers = []
for url, when in json.load(sys.stdin):
    got = client.get(f"/arc/{when}id_/{url}", headers={"Accept-Encoding": "gzip, br"})
    answers.append([got.status_code, base64.b64encode(got.data).decode(), dict(got.headers)])
print(json.dumps(answers))
"""


PYWB_VENV = ROOT / ".venv-pywb"  # pywb's own environment (ignored by git), made once


def pywb_python() -> str:
    """A Python that has pywb: this one if it does, else a virtual environment of its own.

    pywb stays out of the test environment: its dependency brotlipy installs a `brotli`
    module that hides Google's, which fetcher decodes br with. In an environment of its own
    it costs nothing, and CI (a fresh clone) replays with the real pywb all the same.
    """
    if importlib.util.find_spec("pywb") is not None:
        return sys.executable
    python = PYWB_VENV / "bin" / "python"
    with open(ROOT / ".venv-pywb.lock", "w") as lock:  # test workers in parallel make it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PYWB_VENV / "ready").exists():
            _make_pywb_venv(python)
    return str(python)


def _make_pywb_venv(python: Path) -> None:
    shutil.rmtree(PYWB_VENV, ignore_errors=True)  # what a stopped install left
    made = subprocess.run(
        f"{sys.executable} -m venv {PYWB_VENV} && {python} -m pip install --quiet "
        f"--disable-pip-version-check 'pywb>=2.8' && touch {PYWB_VENV}/ready",
        shell=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if made.returncode != 0:
        shutil.rmtree(PYWB_VENV, ignore_errors=True)
        pytest.skip(f"pywb could not be installed: {made.stderr[-300:]}")


def replay(tmp: Path, asked: list[tuple[str, str]]) -> list[tuple[int, bytes, dict[str, str]]]:
    """pywb's replay of each (url, timestamp): status, body after Content-Encoding, headers."""
    config, arc = tmp / "pywb.yaml", tmp / "arc"
    config.write_text(f"collections:\n  arc:\n    index_paths: {arc}/\n    archive_paths: {arc}/\n")
    done = subprocess.run(
        [pywb_python(), "-c", PYWB, str(config)], input=json.dumps(asked),
        capture_output=True, text=True, timeout=60, cwd=tmp,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answers = []
    for status, data, headers in json.loads(done.stdout.splitlines()[-1]):
        body = base64.b64decode(data)
        coding = headers.get("Content-Encoding")
        body = {"gzip": gzip.decompress, "br": brotli.decompress}.get(coding, bytes)(body)
        answers.append((status, body, headers))
    return answers


def test_pywb_replays_each_url_as_sent(server: FaultServer, tmp_path: Path) -> None:
    run(server, LISTED, tmp_path)
    answers = replay(tmp_path, [(server.url(path), "2999") for path in EXPECTED])
    for path, (status, body, headers) in zip(EXPECTED, answers, strict=True):
        assert (status, body) == EXPECTED[path], path
        if path.startswith("/encoded/"):
            assert headers["Content-Encoding"] == path.rsplit("/", 1)[1]


def test_refresh_writes_revisits_that_pywb_resolves(server: FaultServer, tmp_path: Path) -> None:
    paths = ["/page/a", "/binary", "/chunked"]
    run(server, paths, tmp_path)
    (first,) = warcs(tmp_path)
    captured = {
        r.rec_headers["WARC-Target-URI"]: r.rec_headers["WARC-Record-ID"]
        for r in records_of(first)
        if r.rec_type == "response"
    }
    time.sleep(1.1)  # CDXJ timestamps are to the second: the revisits' own
    second = run(server, paths, tmp_path, refresh=True)
    assert {r.outcome for r in second} == {"fetched", "not_modified"}
    new = warcs(tmp_path)[-1]
    revisits = {
        r.rec_headers["WARC-Target-URI"]: r for r in records_of(new) if r.rec_type == "revisit"
    }
    assert set(revisits) == {server.url(p) for p in paths}
    profile = "http://netpreserve.org/warc/1.1/revisit/"
    assert (
        revisits[server.url("/page/a")].rec_headers["WARC-Profile"]
        == profile + "server-not-modified"
    )
    assert (
        revisits[server.url("/binary")].rec_headers["WARC-Profile"]
        == profile + "identical-payload-digest"
    )
    for uri, revisit in revisits.items():
        assert revisit.rec_headers["WARC-Refers-To"] == captured[uri]
        assert revisit.rec_headers["WARC-Refers-To-Target-URI"] == uri
    asked = []
    for path in paths:
        stamp = revisits[server.url(path)].rec_headers["WARC-Date"]
        asked.append((server.url(path), "".join(c for c in stamp if c.isdigit())[:14]))
    for path, (status, body, _) in zip(paths, replay(tmp_path, asked), strict=True):
        assert (status, body) == EXPECTED[path], path
    checked = warcio("check", *map(str, warcs(tmp_path)))
    assert checked.returncode == 0, checked.stdout


def test_credentials_are_masked_unless_asked(server: FaultServer, tmp_path: Path) -> None:
    url = server.url("/page/a").replace("http://", "http://user:sesame@")
    headers = (("Authorization", "Bearer tok3n"), ("Cookie", "sid=s3cret"))
    settings = Settings(out=tmp_path / "out", warc=str(tmp_path / "arc" / "c"), headers=headers)
    with open_run(url_batches([url]), settings) as records:
        list(records)
    data = b"".join(gzip.decompress(f.read_bytes()) for f in warcs(tmp_path))
    for secret in (b"sesame", b"tok3n", b"s3cret", b"dXNlcjpzZXNhbWU"):
        assert secret not in data
    assert b"WARC-Target-URI: http://127.0.0.1:" in data and b"Cookie: ***" in data


def test_max_size_starts_new_files(server: FaultServer, tmp_path: Path) -> None:
    run(server, [f"/page/p{n}" for n in range(6)], tmp_path, warc_max_size=3000, threads=1)
    files = warcs(tmp_path)
    assert len(files) >= 3
    for file in files:
        assert next(records_of(file)).rec_type == "warcinfo"
        assert file.with_name(file.name.replace(".warc.gz", ".cdxj")).stat().st_size > 0
    assert warcio("check", *map(str, files)).returncode == 0


KILLED = """
import sys
from pathlib import Path
from fetcher.api import open_run
from fetcher.inputs import url_batches
from fetcher.settings import Settings
base, arc, out = sys.argv[1:]
urls = [f"{base}/page/p{n}" for n in range(2000)] + [f"{base}/slow/30"]
with open_run(url_batches(urls), Settings(out=Path(out), warc=arc, threads=4)) as run:
    for n, record in enumerate(run):
        if n == 200:
            print("ready", flush=True)
"""


def test_kill_9_leaves_whole_records(server: FaultServer, tmp_path: Path) -> None:
    arc = tmp_path / "arc" / "crawl"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, server.url(""), str(arc), str(tmp_path / "out")],
        stdout=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not warcs(tmp_path)  # no file under a final name holds a half record
    (left,) = (tmp_path / "arc").glob("*.warc.gz.open")
    with left.open("ab") as torn:  # as if killed in the middle of a write
        torn.write(gzip.compress(b"WARC/1.1\r\nContent-Length: 99\r\n\r\n")[:25])
    notes = recover(str(arc))
    assert len(notes) == 1 and "torn last record of 25 bytes cut off" in notes[0]
    (file,) = warcs(tmp_path)
    checked = warcio("check", str(file))
    assert checked.returncode == 0, checked.stdout
    assert sum(1 for r in records_of(file) if r.rec_type == "response") >= 200


def test_each_worker_process_writes_its_own_file(server: FaultServer, tmp_path: Path) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom fetcher.api import open_run\n"
        "from fetcher.inputs import url_batches\nfrom fetcher.settings import Settings\n"
        "if __name__ == '__main__':\n"
        "    urls = [f'{sys.argv[1]}/page/q{n}' for n in range(200)]\n"
        "    s = Settings(out=Path(sys.argv[3]), warc=sys.argv[2], processes=2, threads=2)\n"
        "    with open_run(url_batches(urls), s) as run:\n        list(run)\n"
    )
    main = tmp_path / "main.py"
    main.write_text(script)
    arc = tmp_path / "arc" / "crawl"
    done = subprocess.run(
        [sys.executable, str(main), server.url(""), str(arc), str(tmp_path / "out")],
        env=cli_env(), timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = warcs(tmp_path)
    assert len(files) == 2
    responses = [r for f in files for r in records_of(f) if r.rec_type == "response"]
    assert len(responses) == 200
    assert warcio("check", *map(str, files)).returncode == 0


def test_an_older_index_gets_the_capture_columns(tmp_path: Path) -> None:
    db = old_index(tmp_path / "out")
    db.execute(
        "INSERT INTO pages (url, outcome, path, bytes, sha256) VALUES ('u', 'fetched', 'p', 1, 'x')"
    )
    db.commit()
    db.close()
    from fetcher.store import OutDir

    with OutDir(tmp_path / "out") as outdir:
        (known,) = outdir.index.get(["u"])
    assert known is not None and known.copy is not None and known.capture is None


def test_warc_usage_errors() -> None:
    for values, message in [
        ({"pages": False}, "--no-pages only with --warc"),
        ({"warc_secrets": True}, "--warc-secrets only with --warc"),
        ({"warc": "archive/"}, "--warc needs a file name prefix"),
        ({"warc": "a", "warc_max_size": 0}, "--warc-max-size"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings(**values)


def test_cli_archive_only_run(server: FaultServer, tmp_path: Path) -> None:
    arc = tmp_path / "arc" / "crawl"
    urls = "\n".join(server.url(p) for p in ("/page/a", "/binary"))
    ran = invoke(
        "-o", str(tmp_path / "out"), "--warc", str(arc), "--no-pages", "--jsonl", stdin=urls
    )
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert {r["outcome"] for r in records} == {"fetched"} and {r["path"] for r in records} == {None}
    assert not (tmp_path / "out" / f"127.0.0.1_{server.port}").exists()
    assert sum(1 for f in warcs(tmp_path) for r in records_of(f) if r.rec_type == "response") == 2
    summary = invoke("-o", str(tmp_path / "o2"), "--warc", str(arc), "--no-pages", stdin=urls)
    assert "saved: 0 bytes; 2 new" in summary.stderr
    again = invoke(
        "-o", str(tmp_path / "out"), "--warc", str(arc), "--no-pages", "--refresh", stdin=urls
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    kinds = Counter(r.rec_type for f in warcs(tmp_path) for r in records_of(f))
    assert kinds["revisit"] == 2  # a 304 (page/a) and the same digest (binary)


def test_cli_usage_errors(tmp_path: Path) -> None:
    for args, message in [
        (["--no-pages"], "--no-pages only with --warc"),
        (["--warc-secrets"], "--warc-secrets only with --warc"),
        (["--warc", "a", "--warc-max-size", "0"], "warc-max-size"),
    ]:
        ran = invoke("-o", str(tmp_path / "o"), *args, "http://127.0.0.1:9/")
        assert ran.returncode == 2 and message in ran.stderr, (args, ran.stderr)


def test_cli_says_what_it_took_up(server: FaultServer, tmp_path: Path) -> None:
    arc = tmp_path / "arc" / "crawl"
    arc.parent.mkdir()
    left = arc.with_name("crawl-20260101000000000-00000.warc.gz.open")
    left.write_bytes(gzip.compress(b"WARC/1.1\r\nContent-Length: 0\r\n\r\n\r\n\r\n") + b"\x1f\x8b")
    ran = invoke("-o", str(tmp_path / "out"), "--warc", str(arc), server.url("/page/a"))
    assert ran.returncode == 0, ran.stderr
    assert "taken up from a run that was stopped, 1 whole records" in ran.stderr
    assert "torn last record of 2 bytes cut off" in ran.stderr
    assert left.with_name(left.name.removesuffix(".open")).exists()


def test_https_exchanges_are_archived(tls_server: Any, tmp_path: Path) -> None:
    server, bundle = tls_server
    settings = Settings(out=tmp_path / "out", warc=str(tmp_path / "arc" / "c"), verify=str(bundle))
    with open_run(url_batches([server.url("/encoded/gzip")]), settings) as records:
        assert [r.outcome for r in records] == ["fetched"]
    (file,) = warcs(tmp_path)
    (response,) = [r for r in records_of(file) if r.rec_type == "response"]
    assert response.rec_headers["WARC-Target-URI"].startswith("https://127.0.0.1:")
    assert response.rec_headers["WARC-IP-Address"] == "127.0.0.1"
    assert gzip.decompress(response.content) == ENCODED_TEXT
    (request,) = [r for r in records_of(file) if r.rec_type == "request"]
    assert request.http_headers.protocol == "GET"
    assert request.http_headers.statusline == "/encoded/gzip HTTP/1.1"
    assert request.http_headers.get_header("Host") == f"127.0.0.1:{server.port}"


def test_dask_driver_writes_what_comes_back(server: FaultServer, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        records = run(server, LISTED, tmp_path, dask=cluster.scheduler_address)
    assert Counter(r.outcome for r in records) == {"fetched": len(LISTED) - 1, "failed": 1}
    (file,) = warcs(tmp_path)  # one writer: the driver
    answers = [r for r in records_of(file) if r.rec_type == "response"]
    assert len(answers) == len(EXPECTED) + 1  # (the 503 before the page)
    assert warcio("check", str(file)).returncode == 0


def test_robots_txt_is_archived_and_no_capture_of_a_disallowed_url(
    server: FaultServer, tmp_path: Path
) -> None:
    server.robots = (200, "User-agent: *\nDisallow: /page/b\n")
    records = run(server, ["/page/a", "/page/b"], tmp_path, robots=True, threads=1)
    assert {r.url.rsplit("/", 1)[1]: r.outcome for r in records} == {
        "a": "fetched",
        "b": "disallowed",
    }
    assert {r.url.rsplit("/", 1)[1]: r.capture is None for r in records} == {"a": False, "b": True}
    uris = [r.rec_headers["WARC-Target-URI"] for f in warcs(tmp_path) for r in records_of(f)]
    assert server.url("/robots.txt") in uris and server.url("/page/b") not in uris
