"""proxy.py and the transport: HTTPS_PROXY / NO_PROXY honoured by every exchange, through a local
CONNECT proxy that sees host names and ciphertext only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from yarl import URL

from extauthz.errors import ConfigError
from extauthz.mint.aws import assume_role_with_web_identity
from extauthz.mint.errors import TransportError
from extauthz.mint.proxy import proxy_from_environ
from extauthz.mint.transport import HttpClient, make_ssl_context

from .configs import STATIC_KEY, mint_config, mint_env
from .proc import Minter, write_config
from .standins import Cloud, ConnectProxy, ServerThread
from .testca import TestCA

PROXY_CREDENTIALS = "egress:pa%40ss-7f3e"  # percent-encoded '@' in the password


@pytest.fixture
def proxy(server_thread: ServerThread) -> Iterator[ConnectProxy]:
    found = ConnectProxy(server_thread, credentials="egress:pa@ss-7f3e")
    yield found
    found.close()


def host_port(url: str) -> str:
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


class TestSettings:
    @pytest.mark.parametrize(
        ("target", "proxied"),
        [
            ("https://sts.us-west-2.amazonaws.com/", True),
            ("https://login.microsoftonline.com/t/oauth2/v2.0/token", True),
            ("http://169.254.169.254/metadata/identity/oauth2/token", False),  # never http
            ("http://metadata.google.internal/computeMetadata/v1/", False),
            ("https://vault.internal.example/", False),  # .internal.example
            ("https://internal.example/", False),
            ("https://10.1.2.3/", False),  # 10.0.0.0/8
            ("https://[fd00::1]:8443/", False),  # [fd00::1]:8443
            ("https://[fd00::1]/", True),  # only that port goes direct
            ("https://sts.example:443/", False),  # sts.example:443
            ("https://sts.example:8443/", True),
            ("https://LOCALHOST./", False),  # case and a trailing dot
        ],
    )
    def test_no_proxy_hosts_domains_ports_and_networks(self, target: str, proxied: bool) -> None:
        """NO_PROXY as curl reads it: hosts, domains (with or without a dot), host:port, IP
        addresses and CIDR blocks; plain http (the metadata servers) is never proxied."""
        settings = proxy_from_environ(
            {
                "HTTPS_PROXY": "proxy.corp:3128",
                "NO_PROXY": "localhost, .internal.example,10.0.0.0/8,[fd00::1]:8443,"
                "sts.example:443",
            }
        )
        assert settings is not None
        assert (settings.for_url(URL(target)) == URL("http://proxy.corp:3128")) is proxied

    def test_lowercase_wins_star_bypasses_and_credentials_are_kept_apart(self) -> None:
        """https_proxy before HTTPS_PROXY (urllib, curl); `*` sends nothing through; userinfo
        becomes Proxy-Authorization and never appears in the URL shown."""
        settings = proxy_from_environ(
            {"https_proxy": f"http://{PROXY_CREDENTIALS}@a:1", "HTTPS_PROXY": "http://b:2"}
        )
        assert settings is not None
        assert str(settings) == "http://a:1 (https_proxy)"
        assert settings.authorization is not None
        assert settings.authorization.reveal() == "Basic ZWdyZXNzOnBhQHNzLTdmM2U="
        assert "pa@ss" not in repr(settings) and "ZWdyZXNz" not in repr(settings)
        starred = proxy_from_environ({"HTTPS_PROXY": "http://a:1", "no_proxy": "*"})
        assert starred is not None and starred.for_url(URL("https://x.example/")) is None
        assert proxy_from_environ({"HTTP_PROXY": "http://a:1"}) is None

    @pytest.mark.parametrize("value", ["https://proxy:3128", "socks5://proxy:1080", "http://:3"])
    def test_a_proxy_that_cannot_be_used_is_a_config_error(self, value: str) -> None:
        """Only http:// proxies (CONNECT); the error names the variable, never a password."""
        with pytest.raises(ConfigError) as info:
            proxy_from_environ({"HTTPS_PROXY": value.replace("://", "://u:secret@")})
        assert info.value.problems[0].startswith("HTTPS_PROXY: ")
        assert "secret" not in str(info.value)


class TestThroughTheProxy:
    async def test_an_exchange_goes_through_the_tunnel_and_no_proxy_goes_direct(
        self, cloud: Cloud, test_ca: TestCA, proxy: ConnectProxy
    ) -> None:
        """STS through CONNECT with Proxy-Authorization; the proxy relays only ciphertext. With
        the host in NO_PROXY, the same call goes direct."""
        token = cloud.issuer.issue("https://accounts.google.com", "sts.amazonaws.com", "s")
        for no_proxy, through in (("", True), ("127.0.0.1", False)):
            env = {"HTTPS_PROXY": proxy.url(PROXY_CREDENTIALS), "NO_PROXY": no_proxy}
            client = HttpClient(
                make_ssl_context(str(test_ca.ca_file)), 5, proxy=proxy_from_environ(env)
            )
            before = len(proxy.connects)
            try:
                creds = await assume_role_with_web_identity(
                    client,
                    endpoint=cloud.sts.url,
                    role_arn=cloud.sts.role_arn,
                    session_name="s",
                    web_identity_token=token,
                )
            finally:
                await client.close()
            assert creds.access_key_id in cloud.sts.issued
            assert (len(proxy.connects) > before) is through
        assert proxy.targets() == {host_port(cloud.sts.url)}
        assert proxy.connects[0]["proxy_authorization"].startswith("Basic ")
        assert proxy.relayed and token.encode() not in proxy.relayed
        assert token.split(".")[1].encode() not in proxy.relayed

    async def test_proxy_failures_name_the_proxy_never_its_password(
        self, cloud: Cloud, test_ca: TestCA, proxy: ConnectProxy, unused_tcp_port: int
    ) -> None:
        """A wrong password is a 407 that says to check it; a proxy that is down is named."""
        context = make_ssl_context(str(test_ca.ca_file))
        for url, expected in (
            (proxy.url("egress:wrong"), "answered CONNECT with HTTP 407"),
            (f"http://egress:wrong@127.0.0.1:{unused_tcp_port}", "cannot connect to the proxy"),
        ):
            client = HttpClient(context, 5, proxy=proxy_from_environ({"HTTPS_PROXY": url}))
            try:
                with pytest.raises(TransportError) as info:
                    await client.request("POST", cloud.sts.url, what="STS at x", form={"a": "b"})
            finally:
                await client.close()
            message = str(info.value)
            assert expected in message and "(HTTPS_PROXY)" in message and "wrong" not in message


def test_every_exchange_of_a_whole_run_goes_through_the_proxy(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path, proxy: ConnectProxy
) -> None:
    """`extauthz mint --once` with HTTPS_PROXY: AWS STS, Entra, GitHub's token endpoint, Google
    STS and IAM Credentials are each reached through a CONNECT tunnel; the GCE metadata server
    (plain http, link-local in real life) is not; nothing the proxy relayed holds a token; the
    proxy's password is in no log line."""
    config = write_config(tmp_path / "policy.yaml", mint_config(cloud, str(test_ca.ca_file)))
    env = mint_env(cloud) | {"HTTPS_PROXY": proxy.url(PROXY_CREDENTIALS)}
    minter = Minter(["--config", str(config), "--out", str(tmp_path / "out"), "--once"], env)
    assert minter.wait() == 0, "\n".join(minter.lines)
    assert proxy.targets() == {
        host_port(url)
        for url in (
            cloud.sts.url,
            cloud.entra.url,
            cloud.github.url,
            cloud.google_sts.url,
            cloud.iam.url,
        )
    }
    assert cloud.gce.requests  # reached, directly
    secrets = [*cloud.secrets(), STATIC_KEY]
    assert not [s for s in secrets if s.encode() in proxy.relayed]
    assert not any("pa@ss" in line or "pa%40ss" in line for line in minter.lines)
    started = minter.wait_for_record("https calls go through a proxy")
    assert started["proxy"] == f"http://127.0.0.1:{proxy.port} (HTTPS_PROXY)"


def test_a_malformed_proxy_stops_the_minter_at_start(cloud: Cloud, tmp_path: Path) -> None:
    """HTTPS_PROXY that cannot be used: exit 2, the variable named, nothing minted."""
    config = write_config(tmp_path / "policy.yaml", mint_config(cloud))
    env = mint_env(cloud) | {"HTTPS_PROXY": "https://u:hunter2@proxy:3128"}
    minter = Minter(["--config", str(config), "--out", str(tmp_path / "out"), "--once"], env)
    assert minter.wait() == 2
    errors = [r["msg"] for r in minter.records() if r.get("level") == "error"]
    assert errors and errors[0].startswith("environment: HTTPS_PROXY: 'https://proxy:3128' must be")
    assert not any("hunter2" in line for line in minter.lines)
    assert not cloud.sts.requests  # nothing was called
