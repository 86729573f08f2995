"""Where webhooks may be sent: the host allowlist and the private-address rule
(``notifier.webhook_hosts``, ``notifier.webhook_allow_private``), against SSRF.

A URL is checked twice. When a rule is made (`WebhookPolicy.check_url`, in
`monq.core.webhook_policy`, which the queue uses at enqueue): its host must match
the allowlist (if there is one), and unless private addresses are allowed it may not
be a literal loopback, link-local, private, unspecified, multicast or reserved
address, nor ``localhost``. When it is sent (`PolicyResolver`, the resolver of the
notifier's HTTP client, so every URL passes through it whenever and however its rule
was made): the allowlist is checked again (the configuration, a group or a job type
may have changed), the name (or literal address) is resolved with the event loop's
``getaddrinfo``, and if any of its addresses is not public the send is refused. The
HTTP client connects only to the addresses this resolver returned, so a name that
resolves to a public address when checked cannot be switched to a private one before
the connection (DNS rebinding). A refusal is `RefusedDestination`: the notifier
fails the delivery at once, without retrying.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tornado.netutil import Resolver

from monq.core.webhook_policy import (
    LOCAL_NAMES,
    RefusedDestination,
    WebhookPolicy,
    host_of,
    is_public,
    literal_address,
)

__all__ = ["LOCAL_NAMES", "PolicyResolver", "RefusedDestination", "WebhookPolicy", "host_of",
           "is_public", "literal_address"]


class PolicyResolver(Resolver):
    """A tornado resolver that applies a `WebhookPolicy` to every name it resolves
    and returns only the addresses it checked (the client connects to those)."""

    def initialize(self, policy: WebhookPolicy) -> None:  # type: ignore[override]
        self.policy = policy

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC,
                      ) -> list[tuple[int, Any]]:
        name = host.rstrip(".").lower()
        if not self.policy.host_allowed(name):
            raise RefusedDestination(f"host {name} is not in notifier.webhook_hosts")
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=family, type=socket.SOCK_STREAM)
        resolved: list[tuple[int, Any]] = [(fam, address) for fam, _, _, _, address in infos]
        self.policy.check_addresses(name, [str(address[0]) for _, address in resolved])
        return resolved
