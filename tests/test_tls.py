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
