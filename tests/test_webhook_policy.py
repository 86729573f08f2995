"""Where webhooks may go (SSRF): ``notifier.webhook_hosts`` and
``notifier.webhook_allow_private``, checked when a rule is made (a 400 naming the
field) and when it is sent (the notifier's resolver; refused deliveries fail at once)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from monq.core.config import Config, load_config
from monq.core.embedded import free_port
from monq.core.errors import ValidationError
from monq.core.store import Store
from monq.notify.daemon import Notifier, outcome
from monq.notify.webhook_policy import (
    PolicyResolver,
    RefusedDestination,
    WebhookPolicy,
    is_public,
)
from monq.queue.enqueue import EnqueueRequest
from monq.queue.queue import Queue
from tests.api_fixtures import ApiClient
from tests.notify_fixtures import DUMMY, Clock, Hook, deliveries, notifier_config, run_job

NOT_PUBLIC = ["127.0.0.1", "127.1.2.3", "169.254.169.254", "10.0.0.1", "172.16.5.4",
              "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1",  # noqa: S104
              "::1", "::", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
              "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1", "2001:db8::1"]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946",
          "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_loopback_link_local_private_and_unspecified_are_not_public(text: str) -> None:
    assert not is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_internet_addresses_are_public(text: str) -> None:
    assert is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/admin", "http://169.254.169.254/latest/meta-data/",
    "https://10.1.2.3/hook", "http://[::1]:9000/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/", "http://localhost:8080/", "http://LOCALHOST./",
    "http://admin.localhost/", "http://user:pw@192.168.0.1/x"])
def test_by_default_literal_private_addresses_and_localhost_are_refused(url: str) -> None:
    with pytest.raises(RefusedDestination, match="webhook_allow_private is false"):
        WebhookPolicy().check_url(url)
    WebhookPolicy(allow_private=True).check_url(url)  # the operator may allow them


def test_by_default_any_public_host_is_allowed() -> None:
    for url in ("https://hooks.slack.com/services/T0/B0/x", "http://93.184.216.34/",
                "https://example.com:8443/hook?x=1"):
        WebhookPolicy().check_url(url)


def test_an_allowlist_admits_only_its_hosts() -> None:
    policy = WebhookPolicy(hosts=("hooks.slack.com", "*.example.com"))
    for url in ("https://hooks.slack.com/x", "https://HOOKS.SLACK.COM./x",
                "https://a.example.com/", "https://deep.a.example.com:444/"):
        policy.check_url(url)
    for url in ("https://example.com/", "https://a.example.com.evil.net/",
                "https://evil.net/hooks.slack.com", "https://slack.com/",
                "http://93.184.216.34/"):
        with pytest.raises(RefusedDestination, match=r"not in notifier\.webhook_hosts"):
            policy.check_url(url)


def test_the_allowlist_does_not_admit_private_addresses_by_itself() -> None:
    with pytest.raises(RefusedDestination, match="not public"):
        WebhookPolicy(hosts=("10.*",)).check_url("http://10.0.0.5/")
    WebhookPolicy(hosts=("10.*",), allow_private=True).check_url("http://10.0.0.5/")


def test_the_keys_come_from_the_environment_and_default_to_public_hosts() -> None:
    cfg = load_config(env={"MONQ_NOTIFIER_WEBHOOK_HOSTS": "hooks.slack.com, *.Example.com",
                           "MONQ_NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true"})
    policy = WebhookPolicy.from_config(cfg.notifier)
    assert policy == WebhookPolicy(hosts=("hooks.slack.com", "*.example.com"),
                                   allow_private=True)
    assert WebhookPolicy.from_config(Config().notifier) == WebhookPolicy()


def test_a_refused_attempt_is_the_last() -> None:
    now = Clock()()
    delivery = {"attempts": 1, "max_attempts": 8}
    assert outcome(delivery, "webhook refused: x", now, 2.0, retry=False)["state"] == "failed"
    assert "state" not in outcome(delivery, "webhook: HTTP 503", now, 2.0)


# At rule creation -----------------------------------------------------------------


async def test_enqueue_refuses_a_private_url_naming_the_field(api: ApiClient) -> None:
    admin = await api.admin()
    for i, url in enumerate(["http://169.254.169.254/latest/meta-data/",
                             "http://127.0.0.1:8080/", "http://localhost/"]):
        rules = [{"on": ["complete_job"], "type": "log"}] * i + [
            {"on": ["complete_job"], "type": "webhook", "url": url}]
        reply = await api.call("POST", "/jobs", token=admin,
                               json_body={"name": DUMMY, "notifications": rules})
        assert reply.code == 400, reply.body
        assert f"notifications[{i}].url" in reply.body["message"]
    listed = await api.call("GET", "/jobs", token=admin)
    assert listed.body["total_count"] == 0
    ok = await api.call("POST", "/jobs", token=admin, json_body={"name": DUMMY, "notifications": [
        {"on": ["complete_job"], "type": "webhook", "url": "https://hooks.example.com/x"}]})
    assert ok.code == 200, ok.body


async def test_enqueue_with_an_allowlist_refuses_other_hosts(store: Store,
                                                             config: Config) -> None:
    queue = Queue(store, config.with_values(notifier={"webhook_hosts": ["*.example.com"]}))
    with pytest.raises(ValidationError, match=r"not in notifier\.webhook_hosts") as refused:
        await queue.enqueue(DUMMY, notifications=[
            {"on": ["complete_job"], "type": "webhook", "url": "https://evil.net/x"}])
    assert refused.value.field == "notifications[0].url"
    with pytest.raises(ValidationError) as chained:
        await queue.enqueue(DUMMY, chain=[EnqueueRequest(name=DUMMY, notifications=[
            {"on": ["complete_job"], "type": "webhook", "url": "https://evil.net/x"}])])
    assert "notifications[0].url" in str(chained.value)
    job = await queue.enqueue(DUMMY, notifications=[
        {"on": ["complete_job"], "type": "webhook", "url": "https://a.example.com/x"}])
    assert job.notifications[0]["url"] == "https://a.example.com/x"


# At send time ------------------------------------------------------------------------


async def test_the_resolver_refuses_a_name_that_resolves_to_a_private_address() -> None:
    with pytest.raises(RefusedDestination, match="host localhost resolves to"):
        await PolicyResolver(policy=WebhookPolicy()).resolve("localhost", 80)
    with pytest.raises(RefusedDestination, match=r"resolves to 169\.254\.169\.254"):
        await PolicyResolver(policy=WebhookPolicy()).resolve("169.254.169.254", 80)
    with pytest.raises(RefusedDestination, match=r"not in notifier\.webhook_hosts"):
        await PolicyResolver(policy=WebhookPolicy(hosts=("hooks.example.com",),
                                                  allow_private=True)).resolve("localhost", 80)
    allowed = await PolicyResolver(policy=WebhookPolicy(
        hosts=("local*",), allow_private=True)).resolve("localhost", 80, socket.AF_INET)
    assert allowed and all(address == ("127.0.0.1", 80) for _, address in allowed)


async def test_a_webhook_to_a_private_address_fails_at_once_without_a_request(
        store: Store, config: Config, hook: tuple[Hook, str], clock: Clock) -> None:
    received, url = hook  # http://127.0.0.1:<port>/hook
    by_name = url.replace("127.0.0.1", "localhost")
    # rules made while private addresses were allowed (or by a job type or group)
    permissive = config.with_values(notifier={"webhook_allow_private": True})
    await run_job(Queue(store, permissive), DUMMY, notifications=[
        {"on": ["complete_job"], "type": "webhook", "url": url},
        {"on": ["complete_job"], "type": "webhook", "url": by_name}])
    await Notifier(store, notifier_config(config, free_port()), clock=clock).tick()

    docs = await deliveries(store)
    assert [(d["state"], d["attempts"]) for d in docs] == [("failed", 1), ("failed", 1)]
    errors = sorted(d["last_error"] for d in docs)
    assert errors[0].startswith("webhook refused: host 127.0.0.1 resolves to 127.0.0.1")
    assert errors[1].startswith("webhook refused: host localhost resolves to")
    assert all("webhook_allow_private is false" in e for e in errors)
    assert received.requests == []

    clock.advance(3600)  # not retried
    await Notifier(store, notifier_config(config, free_port()), clock=clock).tick()
    assert [d["attempts"] for d in await deliveries(store)] == [1, 1]
    assert received.requests == []


async def test_a_webhook_off_the_allowlist_fails_at_send_time(
        store: Store, config: Config, hook: tuple[Hook, str], clock: Clock) -> None:
    received, url = hook
    await run_job(Queue(store, config.with_values(notifier={"webhook_allow_private": True})),
                  DUMMY, notifications=[{"on": ["complete_job"], "type": "webhook",
                                         "url": url.replace("127.0.0.1", "localhost")}])
    strict = notifier_config(config, free_port(), webhook_allow_private=True,
                             webhook_hosts=["hooks.example.com"])
    await Notifier(store, strict, clock=clock).tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "failed" and doc["last_error"] == (
        "webhook refused: host localhost is not in notifier.webhook_hosts")
    assert received.requests == []


async def test_an_allowed_private_receiver_by_name_gets_the_webhook(
        store: Store, config: Config, hook: tuple[Hook, str], clock: Clock) -> None:
    received, url = hook
    permissive = config.with_values(notifier={"webhook_allow_private": True,
                                              "webhook_hosts": ["localhost"]})
    await run_job(Queue(store, permissive), DUMMY, notifications=[
        {"on": ["complete_job"], "type": "webhook",
         "url": url.replace("127.0.0.1", "localhost")}])
    await Notifier(store, notifier_config(permissive, free_port()), clock=clock).tick()
    [doc] = await deliveries(store)
    assert doc["state"] == "delivered", doc["last_error"]
    assert len(received.requests) == 1
