"""Notification rules and templates: checked when made, sandboxed when rendered,
language variants, and the retry arithmetic of the notifier."""

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from monq.core.errors import ValidationError
from monq.notify.daemon import outcome, render_payload, retry_delay_s
from monq.notify.rules import Rule, check_rules, expand
from monq.notify.templates import RenderError, check_template, render, template_context
from monq.queue.queue import Queue

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ x['__class__'] }}",
    "{{ x|attr('__class__') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{% set y = args._private %}{{ y }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_refused_when_the_rule_is_made(source: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_rules([{"on": ["complete_job"], "type": "log", "message": source}])
    assert "may not use" in str(refused.value) and refused.value.field == "notifications[0].message"


@pytest.mark.parametrize(("source", "context"), [
    ("{{ ''|attr(name) }}", {"name": "__class__"}),
    ("{{ x.__class__ }}", {"x": 1}),
    ("{{ 'a' * 100000000 }}", {}),
    ("{{ 10 ** 100000 }}", {}),
    ("{{ range(10000000)|list }}", {}),
])
def test_escapes_and_bombs_built_at_render_time_fail(source: str, context: dict) -> None:
    with pytest.raises(RenderError):
        render(source, context)


def test_syntax_errors_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as refused:
        check_template("{% for x in y %}", "body")
    assert refused.value.field == "body" and "invalid template" in str(refused.value)


def test_rendering_is_plain_text_and_lenient_about_missing_values() -> None:
    assert render("<b>{{ a }}</b>{{ missing.deep }}!", {"a": "&"}) == "<b>&</b>!"


def test_context_holds_what_templates_may_use() -> None:
    job_id = ObjectId()
    job = {"_id": job_id, "number": 7, "name": "a.B", "state": "running",
           "args": {"day": "2026-01-01"}, "enqueued": {"by": "anna"},
           "locked": {"worker": "w9"}, "killed_at": datetime.now(UTC),
           "progress": {"value": 0.25, "message": "old"}}
    event = {"_id": ObjectId(), "name": "progress_job",
             "data": {"_id": job_id, "state": "running", "progress": 0.5, "message": "half",
                      "progress_data": {"rows": 3}}}
    context = template_context(event, job)
    assert context == {
        "transition": "progress_job", "description": "job #7 (a.B) reported progress",
        "job_id": str(job_id), "number": 7, "name": "a.B", "state": "running",
        "progress": 0.5, "message": "half", "cancelled": True, "worker": "w9",
        "error": None, "data": {"rows": 3}, "enqueued_by": "anna",
        "args": {"day": "2026-01-01"}}


@pytest.mark.parametrize(("rule", "field", "text"), [
    ({"on": ["finished"], "type": "log"}, "notifications[0].on", "unknown transition 'finished'"),
    ({"on": [], "type": "log"}, "notifications[0].on", "at least one transition"),
    ({"on": ["complete_job"], "type": "sms"}, "notifications[0].type", "one of log, email"),
    ({"on": ["complete_job"], "type": "email"}, "notifications[0].to", "at least one recipient"),
    ({"on": ["complete_job"], "type": "email", "to": ["not-an-address"]},
     "notifications[0].to", "not an email address"),
    ({"on": ["complete_job"], "type": "webhook", "url": "file:///etc/passwd"},
     "notifications[0].url", "http(s) URL"),
    ({"on": ["complete_job"], "type": "log", "level": "loud"}, "notifications[0].level",
     "one of debug"),
    ({"on": ["complete_job"], "type": "log", "colour": "red"}, "notifications[0]",
     "unknown field 'colour'"),
    ({"on": ["complete_job"], "type": "log", "languages": {"de": {"subject": "x"}}},
     "notifications[0].languages", "unknown field 'subject'"),
    ({"group": "no.such.group"}, "notifications[0].group", "no notification group"),
    ({"group": "tests.ops", "type": "log"}, "notifications[0]", "a group reference"),
])
def test_invalid_rules_are_refused_naming_the_field(rule: dict, field: str, text: str
                                                    ) -> None:
    import tests.notifyjobs  # noqa: F401 - declares the group tests.ops

    with pytest.raises(ValidationError) as refused:
        check_rules([rule])
    assert refused.value.field == field and text in str(refused.value)


def test_defaults_and_groups_are_stored_as_given() -> None:
    import tests.notifyjobs  # noqa: F401

    stored = check_rules([{"on": ["complete_job"], "type": "websocket"}, "tests.ops"])
    assert stored == [{"on": ["complete_job"], "type": "websocket",
                       "message": "{{ description }}"}, {"group": "tests.ops"}]
    rules = expand(stored)
    assert [r.type for r in rules] == ["websocket", "log"]
    assert rules[1].fires_on("failed_job") and not rules[1].fires_on("complete_job")


def test_language_variants_are_picked_by_language() -> None:
    [stored] = check_rules([{
        "on": ["*"], "type": "email", "to": ["a@example.com"], "subject": "Job {{ number }} done",
        "body": "Bye", "languages": {"de": {"subject": "Auftrag {{ number }} fertig"}}}])
    [rule] = expand([stored])
    context = {"number": 3, "transition": "complete_job", "description": "d"}
    assert render_payload(rule, context, "de-AT", "x")["subject"] == "Auftrag 3 fertig"
    assert render_payload(rule, context, "de", "x")["body"] == "Bye"  # not translated
    assert render_payload(rule, context, "fr", "x")["subject"] == "Job 3 done"
    assert render_payload(rule, context, None, "x") == {
        "subject": "Job 3 done", "body": "Bye", "to": ["a@example.com"], "cc": [], "bcc": []}


def test_retry_backoff_doubles_and_the_last_attempt_fails() -> None:
    assert [retry_delay_s(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert retry_delay_s(40, 2.0) == 3600.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    again = outcome({"attempts": 2, "max_attempts": 3}, "HTTP 500", now, 2.0)
    assert again == {"last_error": "HTTP 500", "owner": None,
                     "next_at": now + timedelta(seconds=4)}
    assert outcome({"attempts": 3, "max_attempts": 3}, "HTTP 500", now, 2.0)["state"] == \
        "failed"
    assert outcome({"attempts": 3, "max_attempts": 3}, None, now, 2.0)["state"] == "delivered"


def test_rule_documents_round_trip() -> None:
    rule = Rule(on=frozenset({"complete_job"}), type="webhook", templates={"message": "m"},
                url="https://example.com/hook")
    assert expand([rule.to_document()]) == [rule]


async def test_a_bad_rule_is_refused_at_enqueue_and_nothing_is_written(queue: Queue) -> None:
    with pytest.raises(ValidationError) as refused:
        await queue.enqueue("monq.jobs.example.DummyJob", notifications=[
            {"on": ["complete_job"], "type": "log", "message": "{{ ''.__class__ }}"}])
    assert refused.value.field == "notifications[0].message"
    with pytest.raises(ValidationError) as refused:
        await queue.enqueue("tests.notifyjobs.BadTemplate")
    assert "tests.notifyjobs.BadTemplate.notifications[0].message" in str(refused.value)
    assert (await queue.list_jobs())[1] == 0
