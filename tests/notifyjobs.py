"""Job types and a notification group used by the notification tests."""

from typing import Any

from monq.notify.rules import notification_group
from monq.queue.job import Job

OPS = notification_group("tests.ops", [
    {"on": ["failed_job"], "type": "log", "level": "warning",
     "message": "ops: {{ description }}: {{ error }}"},
])


class Notified(Job):
    """Logs when it completes, and tells the ops group when it fails."""

    notifications = [
        {"on": ["complete_job"], "type": "log",
         "message": "report {{ args.day }} done by {{ worker }} for {{ enqueued_by }}"},
        "tests.ops",
    ]

    def execute(self, **_: Any) -> None:
        return None


class BadTemplate(Job):
    notifications = [{"on": ["complete_job"], "type": "log",
                      "message": "{{ ''.__class__.__mro__ }}"}]

    def execute(self, **_: Any) -> None:
        return None


class Free(Job):
    """Takes any arguments and does nothing."""

    def execute(self, **_: Any) -> None:
        return None
