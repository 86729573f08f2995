"""Notification rules: their shape, checking them when they are made (at enqueue, so
the queue owns them; the notifier reads them), named groups, and which rules fire on
an event.

A rule is a JSON-friendly dict::

    {"on": ["complete_job", "failed_job"], "type": "email",
     "to": ["ops@example.com"], "cc": [], "bcc": [],
     "subject": "{{ description }}", "body": "error: {{ error }}",
     "languages": {"de": {"subject": "Job #{{ number }} ist fertig"}}}

``on`` names the transitions (the event names of `EventName`, or ``"*"`` for all);
``type`` is ``log`` (``message``, ``level``), ``email`` (``to``, ``cc``, ``bcc``,
``subject``, ``body``), ``websocket`` (``message``) or ``webhook`` (``url``,
``message``). ``languages`` holds per-language variants of the template fields,
picked by the recipient's language (``language`` fixes it for the rule). A rule
``{"group": "ops"}`` stands for the rules of the named group.

Rules come from three places: the job type's ``notifications`` class attribute,
the enqueue request (stored in the job document's ``notifications``), and named
groups either may reference. Groups live in a Python registry
(`notification_group`), declared next to the job types that use them: they are
code, versioned and deployed with the job types, and every process that loads a
job type (API, worker, notifier) sees the same groups without a database round
trip. Every template is checked when its rule is made: at enqueue (a 400), when a
job type's rules are first used, and when a group is declared.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from monq.core.errors import ValidationError
from monq.core.sandbox import check_template
from monq.core.webhook_policy import RefusedDestination, WebhookPolicy
from monq.queue.states import EventName

RuleType = Literal["log", "email", "websocket", "webhook"]
TYPES: tuple[str, ...] = ("log", "email", "websocket", "webhook")
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "log": ("message",), "websocket": ("message",), "webhook": ("message",),
    "email": ("subject", "body"),
}
DEFAULT_MESSAGE = "{{ description }}"
LEVELS = ("debug", "info", "warning", "error")
EVENTS = frozenset(e.value for e in EventName) | {
    "flag_nonstop", "flag_zombie", "reset_job", "restart_waiting", "restart_stopped"}
MAX_RULES = 50
MAX_RECIPIENTS = 100
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,255}\Z")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*\Z", re.IGNORECASE)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?\Z")


@dataclass(frozen=True)
class Rule:
    """One checked rule (groups already expanded)."""

    on: frozenset[str]
    type: str
    templates: Mapping[str, str]
    languages: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    language: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    url: str | None = None
    level: str = "info"

    def fires_on(self, transition: str) -> bool:
        return "*" in self.on or transition in self.on

    def templates_for(self, language: str | None) -> dict[str, str]:
        """The template fields in `language` (its base language, else the default)."""
        chosen = dict(self.templates)
        for key in (language, (language or "").split("-")[0].split("_")[0]):
            if key and key in self.languages:
                chosen.update(self.languages[key])
                break
        return chosen

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"on": sorted(self.on), "type": self.type, **self.templates}
        if self.languages:
            doc["languages"] = {k: dict(v) for k, v in self.languages.items()}
        if self.language:
            doc["language"] = self.language
        if self.type == "email":
            doc.update(to=list(self.to), cc=list(self.cc), bcc=list(self.bcc))
        if self.type == "webhook":
            doc["url"] = self.url
        if self.type == "log":
            doc["level"] = self.level
        return doc


class _Groups:
    """The registry of named groups (one per process)."""

    rules: dict[str, tuple[Rule, ...]] = {}


def notification_group(name: str, rules: Sequence[Mapping[str, Any]]) -> str:
    """Declare (or redeclare) the group `name`: job types and enqueue requests refer
    to it as ``{"group": name}``. Its rules are checked now. Returns `name`."""
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValidationError("group: expected a name", field="group")
    _Groups.rules[name] = tuple(_parse_rule(r, f"group {name}[{i}]")
                                for i, r in enumerate(rules))
    return name


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{where}: expected a list of strings", field=where)
    return tuple(value)


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    addresses = _strings(value, where)
    if len(addresses) > MAX_RECIPIENTS:
        raise ValidationError(f"{where}: at most {MAX_RECIPIENTS} addresses", field=where)
    for address in addresses:
        if not _EMAIL.match(address):
            raise ValidationError(f"{where}: not an email address: {address!r}", field=where)
    return addresses


def _parse_on(value: Any, where: str) -> frozenset[str]:
    names = _strings(value, f"{where}.on")
    if not names:
        raise ValidationError(f"{where}.on: name at least one transition", field=f"{where}.on")
    for name in names:
        if name != "*" and name not in EVENTS:
            raise ValidationError(f"{where}.on: unknown transition {name!r}", field=f"{where}.on")
    return frozenset(names)


def _parse_templates(raw: Mapping[str, Any], kind: str, where: str,
                     defaults: bool) -> dict[str, str]:
    out = {}
    for key in TEMPLATE_FIELDS[kind]:
        if key in raw:
            out[key] = check_template(raw[key], f"{where}.{key}")
        elif defaults:
            out[key] = DEFAULT_MESSAGE if key in ("message", "subject") else (
                "{{ description }}{% if error %}\n\nerror: {{ error }}{% endif %}")
    return out


def _parse_languages(raw: Any, kind: str, where: str) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where}.languages: expected an object", field=f"{where}.languages")
    out = {}
    for language, variant in raw.items():
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            raise ValidationError(f"{where}.languages: not a language code: {language!r}",
                                  field=f"{where}.languages")
        if not isinstance(variant, Mapping):
            raise ValidationError(f"{where}.languages.{language}: expected an object",
                                  field=f"{where}.languages")
        unknown = set(variant) - set(TEMPLATE_FIELDS[kind])
        if unknown:
            raise ValidationError(f"{where}.languages.{language}: unknown field "
                                  f"{sorted(unknown)[0]!r}", field=f"{where}.languages")
        out[language] = _parse_templates(variant, kind, f"{where}.languages.{language}",
                                         defaults=False)
    return out


def _parse_url(url: Any, where: str, webhooks: WebhookPolicy | None) -> str:
    if not isinstance(url, str) or not _URL.match(url) or len(url) > 2000:
        raise ValidationError(f"{where}.url: expected an http(s) URL", field=f"{where}.url")
    if webhooks is not None:
        try:
            webhooks.check_url(url)
        except RefusedDestination as exc:
            raise ValidationError(f"{where}.url: not allowed: {exc}",
                                  field=f"{where}.url") from None
    return url


_KNOWN = {"on", "type", "languages", "language", "message", "level", "to", "cc", "bcc",
          "subject", "body", "url"}


def _parse_rule(raw: Any, where: str, webhooks: WebhookPolicy | None = None) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where}: a rule must be an object", field=where)
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ValidationError(f"{where}: unknown field {sorted(unknown)[0]!r}", field=where)
    kind = raw.get("type")
    if kind not in TYPES:
        raise ValidationError(f"{where}.type: one of {', '.join(TYPES)}", field=f"{where}.type")
    language = raw.get("language")
    if language is not None and (not isinstance(language, str)
                                 or not _LANGUAGE.match(language)):
        raise ValidationError(f"{where}.language: not a language code", field=f"{where}.language")
    rule = Rule(on=_parse_on(raw.get("on"), where), type=kind,
                templates=_parse_templates(raw, kind, where, defaults=True),
                languages=_parse_languages(raw.get("languages"), kind, where),
                language=language)
    if kind == "email":
        to = _addresses(raw.get("to", []), f"{where}.to")
        cc = _addresses(raw.get("cc", []), f"{where}.cc")
        bcc = _addresses(raw.get("bcc", []), f"{where}.bcc")
        if not (to or cc or bcc):
            raise ValidationError(f"{where}.to: name at least one recipient", field=f"{where}.to")
        return dataclasses.replace(rule, to=to, cc=cc, bcc=bcc)
    if kind == "webhook":
        return dataclasses.replace(rule, url=_parse_url(raw.get("url"), where, webhooks))
    if kind == "log":
        level = raw.get("level", "info")
        if level not in LEVELS:
            raise ValidationError(f"{where}.level: one of {', '.join(LEVELS)}",
                                  field=f"{where}.level")
        return dataclasses.replace(rule, level=level)
    return rule


def check_rules(raw: Any, where: str = "notifications",
                webhooks: WebhookPolicy | None = None) -> list[dict[str, Any]]:
    """Rules as given by a user or a job type, checked; what to store (group
    references kept as references, so that a group's later rules apply). With
    `webhooks`, a webhook's URL must be one the policy allows (the notifier checks
    every URL again when it sends, including those of groups and job types)."""
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise ValidationError(f"{where}: expected a list of rules", field=where)
    if len(raw) > MAX_RULES:
        raise ValidationError(f"{where}: at most {MAX_RULES} rules", field=where)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"group": item}
        if isinstance(item, Mapping) and "group" in item:
            if set(item) != {"group"} or not isinstance(item["group"], str):
                raise ValidationError(f"{where}[{i}]: a group reference is "
                                      f"{{\"group\": <name>}}", field=f"{where}[{i}]")
            if item["group"] not in _Groups.rules:
                raise ValidationError(f"{where}[{i}]: no notification group "
                                      f"{item['group']!r}", field=f"{where}[{i}].group")
            out.append({"group": item["group"]})
        else:
            out.append(_parse_rule(item, f"{where}[{i}]", webhooks).to_document())
    return out


def expand(stored: Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Stored rules (checked by `check_rules`) with group references expanded; a group
    that no longer exists contributes nothing."""
    rules: list[Rule] = []
    for item in stored:
        if "group" in item:
            rules += _Groups.rules.get(str(item["group"]), ())
        else:
            rules.append(_parse_rule(item, "notifications"))
    return rules


class _TypeRules:
    """Checked rules of job types, by qualified name (job types do not change while
    a process runs)."""

    checked: dict[str, list[dict[str, Any]]] = {}


def job_type_rules(qualname: str, notifications: Any) -> list[dict[str, Any]]:
    """A job type's ``notifications`` checked (once per process)."""
    cached = _TypeRules.checked.get(qualname)
    if cached is None:
        cached = check_rules(notifications, f"{qualname}.notifications")
        _TypeRules.checked[qualname] = cached
    return cached
