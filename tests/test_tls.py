from __future__ import annotations

from tests.conftest import invoke, run_cli


def test_untrusted_certificate(tls_server, tmp_path) -> None:
    server, _ = tls_server
    result = invoke("-o", str(tmp_path / "out"), "--jsonl", stdin=server.url("/page/a") + "\n")
    assert result.returncode == 3
    assert '"error":"TLS certificate not trusted — use --ca-bundle or --insecure"' in result.stdout
    assert '"attempts":1' in result.stdout  # not worth retrying


def test_ca_bundle(tls_server, tmp_path) -> None:
    server, bundle = tls_server
    result = invoke(
        "-o", str(tmp_path / "out"), "--ca-bundle", str(bundle), stdin=server.url("/page/a") + "\n"
    )
    assert result.returncode == 0, result.stderr


def test_insecure_fetches_quietly(tls_server, tmp_path) -> None:
    server, _ = tls_server
    result = run_cli("-o", str(tmp_path / "out"), "--insecure", stdin=server.url("/page/a") + "\n")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr  # the user asked for it: no warning per request


def test_the_options_win_over_a_bundle_variable_when_the_environment_is_read(
    tls_server, tmp_path
) -> None:
    """A .netrc makes requests read the environment on every request; a CA-bundle variable
    must still not override --insecure or --ca-bundle."""
    import certifi

    server, bundle = tls_server
    netrc = tmp_path / "netrc"
    netrc.write_text("machine elsewhere.example login u password p\n")
    env = {"REQUESTS_CA_BUNDLE": certifi.where(), "NETRC": str(netrc)}  # not our test CA
    for option in (["--insecure"], ["--ca-bundle", str(bundle)]):
        result = invoke(
            "-o", str(tmp_path / "out"), *option, stdin=server.url("/page/a") + "\n", env=env
        )
        assert result.returncode == 0, (option, result.stdout, result.stderr)


def test_insecure_and_ca_bundle_together_is_usage(tls_server, tmp_path) -> None:
    _, bundle = tls_server
    result = invoke("--insecure", "--ca-bundle", str(bundle), "-o", str(tmp_path / "o"), stdin="")
    assert result.returncode == 2 and "either --insecure or --ca-bundle" in result.stderr


def test_the_system_trust_store_is_used_not_certifis(tls_server, tmp_path) -> None:
    """A CA the system trusts (OpenSSL's SSL_CERT_FILE here, as a corporate CA would be
    installed) is trusted without --ca-bundle; certifi's bundle would not know it."""
    server, bundle = tls_server
    result = run_cli(
        "-o", str(tmp_path / "out"), stdin=server.url("/page/a") + "\n",
        env={"SSL_CERT_FILE": str(bundle)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_ca_bundle_replaces_the_system_store(tls_server, tmp_path) -> None:
    """--ca-bundle is the only trust, as curl --cacert: a CA the system trusts is not."""
    server, bundle = tls_server
    other = tmp_path / "other.pem"
    __import__("trustme").CA().cert_pem.write_to_path(str(other))
    result = invoke(
        "-o", str(tmp_path / "out"), "--ca-bundle", str(other), "--jsonl",
        stdin=server.url("/page/a") + "\n", env={"SSL_CERT_FILE": str(bundle)},
    )  # fmt: skip
    assert result.returncode == 3 and "TLS certificate not trusted" in result.stdout


def test_a_ca_bundle_is_loaded_once_for_many_connections(tls_server, tmp_path) -> None:
    """requests would load --ca-bundle into every new connection's context (and look at the
    disk for every request): fetcher builds the context once, and the bundle still decides."""
    import fetcher
    from fetcher.session import bundle_trust

    server, bundle = tls_server
    bundle_trust.cache_clear()
    urls = [server.url(f"/page/{i}") for i in range(8)]
    records = list(fetcher.fetch(urls, out=tmp_path / "out", threads=4, verify=str(bundle)))
    assert [r.outcome for r in records] == ["fetched"] * 8
    assert bundle_trust.cache_info().misses == 1
    assert server.connections >= 2  # (several connections: one load served them all)


def test_a_ca_bundle_changed_between_two_runs_of_one_process_is_the_trust_of_the_second(
    tls_server, tmp_path
) -> None:
    """The bundle is loaded once per process, but it stays the only trust: a CA taken out of
    it (rotated, or found compromised) is not trusted by the next run in the same process
    (a library caller, a Dask worker serving runs), as it was not when requests loaded the
    bundle for every connection."""
    import shutil

    import trustme

    import fetcher

    server, bundle = tls_server
    live = tmp_path / "live.pem"
    shutil.copy(bundle, live)
    first = list(fetcher.fetch([server.url("/page/a")], out=tmp_path / "out", verify=str(live)))
    assert first[0].outcome == "fetched", first[0].error
    trustme.CA().cert_pem.write_to_path(str(live))  # the server's CA is no longer in it
    server.drop_connections()
    second = list(fetcher.fetch([server.url("/page/b")], out=tmp_path / "out", verify=str(live)))
    assert second[0].outcome == "failed" and "not trusted" in (second[0].error or "")


def test_a_ca_bundle_replaced_between_runs_is_the_next_runs_trust(
    tls_server, tls_authority, tmp_path
) -> None:
    """One process, two runs (a Dask worker, a library caller): the second trusts the
    bundle as it is on disk then, as requests, which read it for every connection, did."""
    import trustme

    import fetcher

    server, good = tls_server
    bundle = tmp_path / "bundle.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))  # another CA: the server is not trusted
    url = server.url("/page/x")
    first = list(fetcher.fetch([url], out=tmp_path / "one", verify=str(bundle), retries=0))
    bundle.write_bytes(good.read_bytes())  # the right one now, at the same path
    second = list(fetcher.fetch([url], out=tmp_path / "two", verify=str(bundle), retries=0))
    assert [first[0].outcome, second[0].outcome] == ["failed", "fetched"]


def test_a_ca_bundle_that_is_a_folder_of_hashed_certificates(tls_server, tmp_path) -> None:
    """--ca-bundle takes a folder as the variables do (curl --capath): it was refused ("is a
    directory"), though REQUESTS_CA_BUNDLE naming the same folder was trusted."""
    import subprocess

    import pytest

    server, bundle = tls_server
    named = subprocess.run(
        ["openssl", "x509", "-hash", "-noout"], input=bundle.read_bytes(), capture_output=True
    )
    if named.returncode != 0:
        pytest.skip("no openssl command to name the certificate by its hash")
    folder, other = tmp_path / "certs", tmp_path / "other"
    folder.mkdir()
    other.mkdir()
    (folder / f"{named.stdout.decode().strip()}.0").write_bytes(bundle.read_bytes())
    for option in (["--ca-bundle", str(folder)], []):
        env = {} if option else {"REQUESTS_CA_BUNDLE": str(folder)}
        result = run_cli("-o", str(tmp_path / "out"), *option, server.url("/page/a"), env=env)
        assert result.returncode == 0, (option, result.stderr)
    result = run_cli("-o", str(tmp_path / "out"), "--ca-bundle", str(other), server.url("/page/b"))
    assert result.returncode == 3 and "TLS certificate not trusted" in result.stderr


def test_a_ca_bundle_with_no_certificate_is_one_line_of_bad_usage(tls_server, tmp_path) -> None:
    """Loaded once for the run, a --ca-bundle that holds no certificate (truncated, the wrong
    file) is said at once, before the out dir or any server is touched; every URL failed
    instead, each after four attempts that all connected, and the run exited 3."""
    server, _ = tls_server
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERT\nnot one\n")
    out = tmp_path / "out"
    result = run_cli("-o", str(out), "--ca-bundle", str(garbage), server.url("/page/a"))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line == (
        f"fetcher: error: --ca-bundle {garbage} holds no certificate that can be read"
        " (NO_CERTIFICATE_OR_CRL_FOUND)"
    )
    assert not out.exists() and server.connections == 0
