"""The webhook destination policy: the host allowlist and the private-address rule
(``notifier.webhook_hosts``, ``notifier.webhook_allow_private``), against SSRF.

Pure checks on names and addresses: `WebhookPolicy.check_url` when a rule is made
(by the queue, at enqueue), `WebhookPolicy.check_addresses` on what a name resolved
to when it is sent (by the notifier's resolver, `monq.notify.webhook_policy`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from monq.core.config import NotifierConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOCAL_NAMES = ("localhost", "*.localhost", "localhost.localdomain")


class RefusedDestination(Exception):
    """The webhook's host or address is not allowed (a policy decision, not an outage)."""


def literal_address(host: str) -> IPAddress | None:
    """`host` as an IP address if it is one (brackets and an IPv6 zone stripped)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet: not loopback, link-local, private
    (including shared 100.64/10 and unique-local fc00::/7), unspecified, multicast or
    reserved; an IPv4-mapped or 6to4 IPv6 address is judged by its IPv4 part."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    return address.is_global and not (
        address.is_loopback or address.is_link_local or address.is_private
        or address.is_unspecified or address.is_multicast or address.is_reserved)


def host_of(url: str) -> str:
    """The URL's host, lower case, without a trailing dot ('' if it has none)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


@dataclass(frozen=True)
class WebhookPolicy:
    """The operator's rules for webhook destinations."""

    hosts: tuple[str, ...] = ()  # glob patterns; empty: any host
    allow_private: bool = False

    @classmethod
    def from_config(cls, cfg: NotifierConfig) -> WebhookPolicy:
        return cls(hosts=tuple(p.strip().rstrip(".").lower() for p in cfg.webhook_hosts
                               if p.strip()),
                   allow_private=cfg.webhook_allow_private)

    def host_allowed(self, host: str) -> bool:
        """True if `host` matches the allowlist (always, without one)."""
        return not self.hosts or any(fnmatch.fnmatchcase(host, p) for p in self.hosts)

    def check_url(self, url: str) -> None:
        """Refuse (`RefusedDestination`) a URL whose host is not allowed by name: off
        the allowlist, or a literal non-public address or ``localhost``."""
        host = host_of(url)
        if not host:
            raise RefusedDestination("the URL has no host")
        if not self.host_allowed(host):
            raise RefusedDestination(f"host {host} is not in notifier.webhook_hosts")
        if self.allow_private:
            return
        address = literal_address(host)
        if address is not None and not is_public(address):
            raise RefusedDestination(f"address {address} is not public "
                                     f"(notifier.webhook_allow_private is false)")
        if any(fnmatch.fnmatchcase(host, name) for name in LOCAL_NAMES):
            raise RefusedDestination(f"host {host} is local "
                                     f"(notifier.webhook_allow_private is false)")

    def check_addresses(self, host: str, addresses: Sequence[str]) -> None:
        """Refuse `host` if any address it resolved to is not public (unless allowed)."""
        if self.allow_private:
            return
        for text in addresses:
            address = literal_address(text)
            if address is None or not is_public(address):
                raise RefusedDestination(f"host {host} resolves to {text}, which is not "
                                         f"public (notifier.webhook_allow_private is false)")
