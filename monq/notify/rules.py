"""Notification rules as the notifier and job code see them: the rule language (its
shape, checks and named groups, `notification_group`) is part of a job's definition
and lives in `monq.queue.notification_rules`, where the queue checks rules at enqueue."""

from __future__ import annotations

from monq.queue.notification_rules import (
    EVENTS,
    MAX_RECIPIENTS,
    MAX_RULES,
    TYPES,
    Rule,
    check_rules,
    expand,
    job_type_rules,
    notification_group,
)

__all__ = ["EVENTS", "MAX_RECIPIENTS", "MAX_RULES", "TYPES", "Rule", "check_rules", "expand",
           "job_type_rules", "notification_group"]
