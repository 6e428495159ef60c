"""The outbound proxy: ``HTTPS_PROXY`` and ``NO_PROXY``, read as curl and Python's urllib read them.

Every ``https://`` exchange (STS, Entra, Google STS, IAM Credentials, GitHub's token endpoint, a
``credential_source.url``) goes through the proxy as a ``CONNECT`` tunnel, so the proxy sees the
host name and ciphertext, never a token. Plain ``http://`` endpoints are the link-local metadata
servers (GCE, Azure IMDS) and App Service's local identity endpoint, which a proxy cannot reach:
they are never proxied, and ``HTTP_PROXY`` is not read.

* ``https_proxy`` (else ``HTTPS_PROXY``): ``http://[user:password@]host:port``; a bare
  ``host:port`` means ``http://``. Credentials go in ``Proxy-Authorization: Basic`` and are never
  logged.
* ``no_proxy`` (else ``NO_PROXY``): comma-separated; ``*`` (nothing proxied), a host or domain
  (``example.com`` and ``.example.com`` both match the domain and every host under it), a
  ``host:port``, an IP address or a CIDR block (``10.0.0.0/8``).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from extauthz.errors import ConfigError
from extauthz.mint.redact import Secret

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class NoProxyRule:
    """One ``NO_PROXY`` entry: a domain (with an optional port) or an IP network."""

    domain: str = ""
    port: int | None = None
    network: IpNetwork | None = None

    def __str__(self) -> str:
        where = str(self.network) if self.network is not None else self.domain
        return where if self.port is None else f"{where}:{self.port}"

    def matches(self, host: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        return host == self.domain or host.endswith("." + self.domain)


def _network(text: str) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return None


def _no_proxy_rule(entry: str) -> NoProxyRule | None:
    """One entry; None for an empty one (or ``*``, which the caller handles)."""
    entry = entry.strip().lower()
    network = _network(entry)  # an address or block, IPv6 without a port included
    if network is not None:
        return NoProxyRule(network=network)
    host, port = entry, None
    head, sep, tail = entry.rpartition(":")
    if sep and tail.isdigit():
        host, port = head, int(tail)
    network = _network(host)
    if network is not None:
        return NoProxyRule(network=network, port=port)
    domain = host.removeprefix("*").strip(".")
    return NoProxyRule(domain=domain, port=port) if domain else None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Where ``https://`` calls go, and which hosts go direct."""

    url: URL  # without credentials
    authorization: Secret | None
    bypass_all: bool
    rules: tuple[NoProxyRule, ...]
    source: str  # the variable it came from, for messages

    def __str__(self) -> str:
        return f"{self.url} ({self.source})"

    def for_url(self, target: URL) -> URL | None:
        """The proxy to send ``target`` through, or None to go direct."""
        if target.scheme != "https" or self.bypass_all or target.host is None:
            return None
        host = target.host.lower().rstrip(".")
        if any(rule.matches(host, target.port) for rule in self.rules):
            return None
        return self.url


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def proxy_from_environ(environ: Mapping[str, str]) -> ProxySettings | None:
    """The proxy the environment names, or None; ConfigError naming the variable if malformed."""
    found = _first(environ, "https_proxy", "HTTPS_PROXY")
    if found is None:
        return None
    name, value = found
    try:
        url = URL(value if "://" in value else "http://" + value)
        shown = str(url.with_user(None).with_password(None))
    except ValueError:
        url, shown = URL(), "<not a URL>"
    if url.scheme != "http" or not url.host or url.path not in ("", "/"):
        raise ConfigError(
            f"{name}: {shown!r} must be http://[user:password@]host:port (an https:// proxy, "
            "TLS to the proxy itself, is not supported)",
            "environment",
        )
    authorization = None
    if url.user is not None:
        userinfo = f"{url.user}:{url.password or ''}".encode()
        authorization = Secret("Basic " + base64.b64encode(userinfo).decode("ascii"))
    plain = url.with_user(None).with_password(None).with_path("")
    entries = (_first(environ, "no_proxy", "NO_PROXY") or ("", ""))[1].split(",")
    rules = tuple(r for r in map(_no_proxy_rule, entries) if r is not None)
    bypass_all = any(e.strip() == "*" for e in entries)
    return ProxySettings(plain, authorization, bypass_all, rules, name)
