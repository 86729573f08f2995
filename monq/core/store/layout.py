"""The storage layout: every collection name and every index monq uses.

This module is the one place that names collections and declares indexes;
``monq db init`` and every daemon's start-up create them idempotently.

Collections (all in the database named by ``mongodb.url``):

sys.queue
    One document per job that is not finished (pending, running, deferred,
    failed waiting to retry, held). Written by the queue operations through
    `monq.core.store.jobs`. Fields: ``_id, number, name, args, state,
    priority, attempts, attempts_left, enqueued{at, by, host, origin,
    parent_id, ...}, query_at, locked{worker, host, pid, at, heartbeat, token,
    expires}|null, progress{value, message, at}, held, blocked, wait_for[] (only
    when the job waits for others), has_dependents, pool, tags[], max_parallel,
    unique_key (only when unique), options{retry_delay_s, ...}, defer_count,
    recoveries, chain[], notifications[], parent_id, child_id, killed_at,
    removed_at, zombie_at, wall_at, last_error, started_at, finished_at, runtime,
    result, warnings[], outbox[], v``. ``v`` counts the writes that changed the job
    (absent until the first; a lease's heartbeat and the pull of relayed events do
    not count): a write fenced by ``{_id, v}`` applies only to the job as its writer
    last read or wrote it (see `monq.core.store.jobs`).
    ``outbox`` holds events written in the same update as the state change,
    relayed into sys.event under their pre-assigned ``_id``. Indexes rely on
    ``state, priority, _id, query_at`` (the claim), ``state, query_at`` (when the
    next job is due), ``locked.expires`` (expired leases), ``wait_for`` (sparse:
    only jobs that wait for others, blocked ones among them), ``number``,
    ``name``, ``unique_key`` and ``outbox.0`` (the sweep's relay).
sys.journal
    Finished jobs (complete, error, inactive, killed, removed), same shape
    (``child_id`` set once a restart made a new job); indexes on ``number``,
    ``finished_at``, ``name`` with ``finished_at``, and ``parent_id``.
sys.event
    One document per state change and per chat message:
    ``{_id, name, channel, author, created, data, seq}``; ``seq`` is stamped at
    insertion (readers follow it, see `monq.core.store.events`). Queue events
    carry the job in ``data{_id, number, name, state, ...}``; indexes on
    ``data._id``, ``channel`` and ``seq`` (``_id`` holds the time: ranges and
    retention go by it).
sys.history
    One document per second (and per minute / hour roll-up) in which the
    queue state changed, written by the summarizer: ``{resolution, created, total,
    <state counts>, jobs[]}`` (unique index on ``resolution`` with ``created``).
sys.worker
    One document per worker process (``kind: "worker"``, ``heartbeat``, see
    `monq.core.store.workers`), leases of singleton daemons (``_id:
    "lease:<name>"``), and the maintenance switch (``_id: "maintenance", global,
    names[]``).
sys.role
    Users and roles.
sys.log
    Job log lines: ``{job_id, created, level, message, extra}``.
sys.schedule
    Cron schedules and the scheduler's per-tick outbox (``pending``); the
    fields are listed in `monq.core.store.schedules`.
sys.notification
    Notification deliveries (at-least-once outbox), derived from queue events by
    the notifier (`monq.core.store.notifications`): ``{_id (hash of event id and
    rule), job_id, number, job_name, event_id, transition, type, rule, payload,
    language, state: pending|delivered|failed, attempts, max_attempts, next_at,
    owner, last_error, created, delivered_at, resent}``. Delivered ones are
    deleted after ``notifier.retention_days``.
sys.counter
    Counters, e.g. the job number sequence (``_id: "job_number", n``), parallel
    slots (``_id: "parallel:<name>", kind: "parallel", name, max, holders[{job,
    at}]``, see `monq.core.store.counters`), and the notifier's cursor in sys.event
    (``_id: "notifier_cursor", event_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QUEUE = "sys.queue"
JOURNAL = "sys.journal"
EVENT = "sys.event"
HISTORY = "sys.history"
WORKER = "sys.worker"
ROLE = "sys.role"
LOG = "sys.log"
SCHEDULE = "sys.schedule"
NOTIFICATION = "sys.notification"
COUNTER = "sys.counter"

COLLECTIONS = (QUEUE, JOURNAL, EVENT, HISTORY, WORKER, ROLE, LOG, SCHEDULE,
               NOTIFICATION, COUNTER)


@dataclass(frozen=True)
class Index:
    collection: str
    keys: tuple[tuple[str, int], ...]
    name: str
    options: dict[str, Any] = field(default_factory=dict)


# sys.queue's sparse index of jobs enqueued with dependencies (its reads hint it)
WAIT_FOR_INDEX = "wait_for"

# Indexes of earlier versions that `Store.ensure_indexes` drops: (collection, name)
RETIRED_INDEXES: tuple[tuple[str, str], ...] = (
    (SCHEDULE, "name"),
    # sys.event by ``created``: no query asks for it (time ranges and retention go by
    # ``_id``, which holds the event's time), and every event insert paid for it
    (EVENT, "created"),
    # A job's lease holder: running jobs are few (one per worker slot), so a listing
    # by worker goes by their state; the index cost a write per claim and per end.
    (QUEUE, "locked_worker"),
    # Blocked jobs wait for others, so the sparse ``wait_for`` index finds them.
    (QUEUE, "blocked"),
    # Waiting jobs with a kill or removal asked for: no write leaves one any more (a
    # reset of a dead worker's job misses when a stop was asked for); the sweep looks
    # for those older versions left once per process, without an index.
    (QUEUE, "killed"),
    (QUEUE, "removed"),
)

INDEXES: tuple[Index, ...] = (
    # The claim: waiting jobs by priority, then age; query_at is filtered from the keys.
    Index(QUEUE, (("state", 1), ("priority", -1), ("_id", 1), ("query_at", 1)), "claim"),
    # an idle worker sleeps until the next waiting job is due
    Index(QUEUE, (("state", 1), ("query_at", 1)), "due"),
    Index(QUEUE, (("locked.expires", 1),), "lease_expiry", {"sparse": True}),
    # jobs that wait for others (the field is absent on the rest): their dependents
    # when a job ends, and the blocked ones the sweep checks
    Index(QUEUE, (("wait_for", 1),), WAIT_FOR_INDEX, {"sparse": True}),
    Index(QUEUE, (("number", 1),), "number", {"unique": True}),
    Index(QUEUE, (("name", 1), ("state", 1)), "name_state"),
    Index(QUEUE, (("unique_key", 1),), "unique_key",
          {"unique": True, "partialFilterExpression": {"unique_key": {"$type": "string"}}}),
    Index(QUEUE, (("outbox.0", 1),), "outbox_pending", {"sparse": True}),
    Index(JOURNAL, (("number", 1),), "number", {"unique": True}),
    Index(JOURNAL, (("finished_at", -1),), "finished_at"),
    Index(JOURNAL, (("name", 1), ("finished_at", -1)), "name_finished"),
    # the journal's listings by priority and by enqueue time (by number: the unique index)
    Index(JOURNAL, (("priority", 1), ("_id", 1)), "priority"),
    Index(JOURNAL, (("enqueued.at", 1), ("_id", 1)), "enqueued"),
    Index(EVENT, (("data._id", 1), ("_id", 1)), "job"),
    Index(EVENT, (("channel", 1), ("_id", 1)), "channel"),
    # readers follow sys.event in insertion order (`EventReader`), all channels or one
    Index(EVENT, (("seq", 1),), "seq", {"sparse": True}),
    Index(EVENT, (("channel", 1), ("seq", 1)), "channel_seq", {"sparse": True}),
    Index(HISTORY, (("resolution", 1), ("created", -1)), "resolution_created", {"unique": True}),
    Index(WORKER, (("heartbeat", 1),), "heartbeat"),
    # a user and a role may share a name (the user admin has the role admin)
    Index(ROLE, (("kind", 1), ("name", 1)), "kind_name", {"unique": True}),
    Index(ROLE, (("email", 1),), "email",
          {"unique": True, "partialFilterExpression": {"email": {"$type": "string"}}}),
    Index(LOG, (("job_id", 1), ("_id", 1)), "job"),
    Index(JOURNAL, (("parent_id", 1),), "parent", {"sparse": True}),
    # a name is unique per job: a user who may not see a schedule can still choose
    # its name for their own job, so a refusal never confirms a hidden schedule
    Index(SCHEDULE, (("name", 1), ("job", 1)), "name_job", {"unique": True}),
    Index(SCHEDULE, (("enabled", 1), ("next_at", 1)), "due"),
    Index(SCHEDULE, (("pending.claimed_at", 1),), "pending_claimed", {"sparse": True}),
    Index(NOTIFICATION, (("state", 1), ("next_at", 1)), "due"),
    Index(NOTIFICATION, (("state", 1), ("delivered_at", 1)), "delivered"),
    Index(NOTIFICATION, (("created", -1),), "created"),
    Index(NOTIFICATION, (("job_id", 1), ("created", -1)), "job"),
    Index(NOTIFICATION, (("job_name", 1), ("created", -1)), "job_name"),
)
