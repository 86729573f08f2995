#!/usr/bin/env python3
"""Chaos across a network: a database host, an API host and worker hosts, each in a
Linux network namespace of its own, run the real `monq` commands while the script
cuts links, slows them, pauses and restarts the database and kills the API server.

    sudo .venv/bin/python scripts/chaos_network.py [--faults all] [--jobs 24]

Every host is a network namespace joined to one switch (a bridge in a namespace of
its own) with addresses 10.231.0.x that exist only inside these namespaces:
nothing is routed out of this machine. The database host runs SecantusDB (with its
data on disk, so it can be restarted), the API host `monq serve`, the worker hosts
`monq worker`; the script itself runs in a namespace of its own on the same switch.
For each fault it enqueues a batch of jobs through the API, injects the fault while
workers hold jobs, lifts it, and then checks every job of the batch from sys.queue,
sys.journal and sys.event:

    lost              enqueued (or acknowledged by the API) but in neither
                      sys.queue nor sys.journal
    completed twice   more than one complete_job event for a job
    ended in error    a job that did not end complete (the jobs never fail by
                      themselves: any error is the fault's)
    recovery          seconds from lifting the fault until the API answers and
                      every worker claims work again (probe jobs keep work waiting)

Faults: partition-long / partition-short (the switch drops one worker host's frames
for twice / a third of the lease), slow-link (100 ms delay and 5 % loss on a worker
host's link: `tc netem`, or where the kernel lacks netem a user-space link that
forwards the host's frames with the same delay and loss), db-pause-short /
db-pause-long (SIGSTOP for 5 s / 60 s, while the API is asked and must answer 503),
api-kill (SIGKILL of `monq serve` amid a stream of enqueues, then started again),
db-restart (SIGTERM, started again 2 s later on the same data).

It exits 1 when a job is lost, completed twice, ended in error or is still
unfinished, when something did not recover, or when the system took longer than
--recovery-limit (2 s) to work again after a database fault; 2 when it cannot run
here (not root, no iproute2, no namespaces). Namespaces and processes are removed
on exit, on failure and SIGTERM too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBNET = "10.231.0"
DB_PORT = 27017
API_PORT = 5001
JOB = "monq.jobs.example.RecordingJob"
ADMIN_PASSWORD = "chaos-network-admin"  # a throw-away server's
WORKER_CONCURRENCY = 2
PROBE_SLEEP_S = 0.2  # the probe jobs that show a worker claims work again
LEASE_S = 6.0  # the zombie time (default): a worker silent for longer loses its jobs
FAULTS = ("partition-long", "partition-short", "slow-link", "db-pause-short",
          "db-pause-long", "api-kill", "db-restart")
QUICK_FAULTS = ("partition-long", "db-pause-short", "api-kill")
RECOVERY_LIMIT_S = 120.0  # how long the script waits for a recovery at all
RECOVERY_LIMIT_DB_S = 2.0  # the promise: everything works 2 s after the database does
SETTLE_LIMIT_S = 240.0
EXIT_UNAVAILABLE = 2


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def requirements() -> str | None:
    """Why this machine cannot run the script, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces): run it with sudo"
    if not shutil.which("ip") or not shutil.which("bridge"):
        return "needs iproute2 (`ip`, `bridge`): apt-get install -y iproute2"
    if importlib.util.find_spec("secantus") is None:
        return "needs SecantusDB for the database host: pip install -e '.[embedded]'"
    if not (Path(sys.executable).parent / "monq").exists():
        return f"needs the `monq` command beside {sys.executable}: pip install -e ."
    probe = f"mqprobe{os.getpid()}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


def netem_available(namespace: str, device: str) -> bool:
    probe = run("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device,
                "root", "netem", "delay", "1ms", check=False)
    if probe.returncode == 0:
        run("ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root",
            check=False)
        return True
    return False


def emulate_link(host_side: str, switch_side: str, delay_s: float, loss: float,
                 seed: int) -> None:
    """netem in user space, for kernels without it: forward Ethernet frames between
    a host's link and its switch port, delaying every frame the host sends by
    `delay_s` and dropping the fraction `loss` of them (what ``tc qdisc add dev eth0
    root netem delay 100ms loss 5%`` does on the host's side). Frames towards the
    host pass untouched. Runs in the switch's namespace until SIGTERM."""
    import random
    import select
    import socket
    from collections import deque

    eth_p_all, packet_outgoing = 0x0003, 4
    rng = random.Random(seed)
    sockets = {}
    for side in (host_side, switch_side):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(eth_p_all))
        sock.bind((side, 0))
        sockets[side] = sock
    inner, outer = sockets[host_side], sockets[switch_side]
    pending: deque[tuple[float, bytes]] = deque()  # one delay for all: first in, first out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        wait = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
        readable, _, _ = select.select([inner, outer], [], [], wait)
        for sock in readable:
            frame, address = sock.recvfrom(65536)
            if address[2] == packet_outgoing:  # our own sends, seen on the way out
                continue
            if sock is outer:
                inner.send(frame)
            elif rng.random() >= loss:
                pending.append((time.monotonic() + delay_s, frame))
        while pending and pending[0][0] <= time.monotonic():
            outer.send(pending.popleft()[1])


def plain_checksums(device: str) -> None:
    """Turn off checksum and segmentation offloads on `device` (in this namespace): a
    frame copied by the user-space link carries no offload state, so it must leave
    its sender complete. The ETHTOOL_S* ioctls, as `ethtool -K dev tx off` sends."""
    import array
    import fcntl
    import socket
    import struct

    siocethtool = 0x8946
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for command in (0x1f, 0x24, 0x19, 0x17):  # TSO, GSO, scatter-gather, tx checksum
            value = array.array("B", struct.pack("II", command, 0))
            request = struct.pack("16sP", device.encode(), value.buffer_info()[0])
            with contextlib.suppress(OSError):
                fcntl.ioctl(sock.fileno(), siocethtool, request)


# The hosts -------------------------------------------------------------------------
@dataclass
class Lab:
    """The namespaces: a switch and one namespace per host, each with one link."""

    prefix: str
    hosts: dict[str, str] = field(default_factory=dict)  # host -> address
    emulator: subprocess.Popen[bytes] | None = None  # the user-space link, while slow

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def switch(self) -> str:
        return self.ns("sw")

    def port(self, host: str) -> str:
        return f"p-{host}"

    def build(self, hosts: dict[str, str]) -> None:
        run("ip", "netns", "add", self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for host, address in hosts.items():
            self.hosts[host] = address
            run("ip", "netns", "add", self.ns(host))
            run("ip", "link", "add", self.port(host), "netns", self.switch, "type", "veth",
                "peer", "name", "eth0", "netns", self.ns(host))
            run("ip", "-n", self.switch, "link", "set", self.port(host), "master", "br0")
            run("ip", "-n", self.switch, "link", "set", self.port(host), "up")
            run("ip", "-n", self.ns(host), "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", self.ns(host), "link", "set", "eth0", "up")
            run("ip", "-n", self.ns(host), "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        """The switch drops the host's frames, silently, as a failed link would."""
        run("bridge", "-n", self.switch, "link", "set", "dev", self.port(host), "state", "0")

    def mend(self, host: str) -> None:
        run("bridge", "-n", self.switch, "link", "set", "dev", self.port(host), "state", "3")

    def slow(self, host: str, delay_ms: int, loss_pct: float) -> str:
        """Delay and lose the host's outgoing frames: with netem where the kernel has
        it, else with the user-space link (`emulate_link`); says which."""
        if netem_available(self.ns(host), "eth0"):
            run("ip", "netns", "exec", self.ns(host), "tc", "qdisc", "add", "dev", "eth0",
                "root", "netem", "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%")
            return "tc netem"
        for other in self.hosts:  # every sender's frames must be complete when copied
            run("ip", "netns", "exec", self.ns(other), sys.executable, os.path.abspath(__file__),
                "--plain-checksums", "eth0")
        sw, port = self.switch, self.port(host)
        run("ip", "-n", sw, "link", "add", f"s-{host}", "type", "veth", "peer", "name",
            f"t-{host}")
        run("ip", "-n", sw, "link", "set", f"t-{host}", "master", "br0")
        for device in (f"s-{host}", f"t-{host}"):
            run("ip", "-n", sw, "link", "set", device, "up")
        for device in (f"s-{host}", port):
            run("ip", "-n", sw, "link", "set", device, "promisc", "on")
        run("ip", "-n", sw, "link", "set", port, "nomaster")
        self.emulator = subprocess.Popen(
            ["ip", "netns", "exec", sw, sys.executable, os.path.abspath(__file__),
             "--emulate-link", port, f"s-{host}", str(delay_ms / 1000), str(loss_pct / 100)],
            start_new_session=True)
        return "a user-space link: this kernel has no netem"

    def unslow(self, host: str) -> None:
        emulator = self.emulator
        if emulator is None:
            run("ip", "netns", "exec", self.ns(host), "tc", "qdisc", "del", "dev", "eth0",
                "root", check=False)
            return
        run("ip", "-n", self.switch, "link", "set", self.port(host), "master", "br0")
        emulator.terminate()
        emulator.wait()
        self.emulator = None
        run("ip", "-n", self.switch, "link", "del", f"s-{host}", check=False)

    def destroy(self) -> None:
        """Kill whatever still runs in our namespaces, then remove them."""
        for host in [*self.hosts, "sw"]:
            pids = run("ip", "netns", "pids", self.ns(host), check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGCONT)
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", self.ns(host), check=False)


class Host:
    """One `monq` (or database) process in a host's namespace, restartable."""

    def __init__(self, lab: Lab, name: str, command: list[str], env: dict[str, str],
                 log_dir: Path) -> None:
        self.lab, self.name, self.command, self.env = lab, name, command, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.ns(self.name), *self.command],
                env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True)  # `ip netns exec` execs: the pid is the command's

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()


# The controller's view: the database and the API ----------------------------------
class Observer:
    """The script's own connections (from its own namespace) to the database and API."""

    def __init__(self, db_url: str, api_url: str) -> None:
        import pymongo

        self.db_url = db_url
        self.api_url = api_url
        self.client: Any = pymongo.MongoClient(db_url, serverSelectionTimeoutMS=2000,
                                               connectTimeoutMS=2000, socketTimeoutMS=5000)
        self.db = self.client.get_default_database()
        self.token = ""

    def http(self, method: str, path: str, body: Any = None, timeout_s: float = 10.0
             ) -> tuple[int, dict[str, Any], float]:
        """(status, reply, seconds); status 0 when the server did not answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own http:// URL
            self.api_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
                return reply.status, json.loads(reply.read() or b"{}"), \
                    time.monotonic() - started
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError):
                return exc.code, json.loads(exc.read() or b"{}"), time.monotonic() - started
            return exc.code, {}, time.monotonic() - started
        except (OSError, ValueError):
            return 0, {}, time.monotonic() - started

    def login(self, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            status, reply, _ = self.http("POST", "/api/v1/login",
                                         {"username": "admin", "password": ADMIN_PASSWORD})
            if status == 200:
                self.token = reply["data"]["token"]
                return
            time.sleep(0.3)
        raise SystemExit("the API server did not let the admin log in")

    def try_db(self, action: Callable[[], Any], default: Any) -> Any:
        import pymongo.errors

        try:
            return action()
        except pymongo.errors.PyMongoError:
            return default

    def enqueue(self, tag: str, count: int, sleep_s: float) -> list[Any]:
        """Enqueue `count` jobs through the API (the way users do); their ids."""
        ids = []
        for i in range(count):
            status, reply, _ = self.http("POST", "/api/v1/jobs", {
                "name": JOB, "args": {"db_url": self.db_url, "sleep": sleep_s + (i % 3) * 0.25}})
            if status not in (200, 201):
                raise SystemExit(f"enqueue failed before the fault: {status} {reply}")
            ids.append(job_id(reply))
        return ids

    def holders(self, ids: list[Any]) -> dict[int, list[Any]]:
        """pid -> the jobs of `ids` it runs."""
        found: dict[int, list[Any]] = {}
        for doc in self.try_db(lambda: list(self.db["sys.queue"].find(
                {"_id": {"$in": ids}, "state": "running"}, {"locked": 1})), []):
            pid = (doc.get("locked") or {}).get("pid")
            if pid:
                found.setdefault(pid, []).append(doc["_id"])
        return found

    def unfinished(self, ids: list[Any]) -> int:
        return int(self.try_db(lambda: self.db["sys.queue"].count_documents(
            {"_id": {"$in": ids}}), len(ids)))

    def claimed_since(self, pids: set[int], since: Any) -> set[int]:
        """Which of the worker processes `pids` claimed a job after `since`."""
        workers = {d["_id"]: d["pid"] for d in self.try_db(lambda: list(
            self.db["sys.worker"].find({"pid": {"$in": list(pids)}}, {"pid": 1})), [])}
        claimed = self.try_db(lambda: self.db["sys.event"].distinct("data.worker", {
            "name": "request_start_job", "created": {"$gt": since},
            "data.worker": {"$in": list(workers)}}), [])
        return {workers[w] for w in claimed if w in workers}

    def completed_since(self, ids: list[Any], since: Any) -> bool:
        return bool(self.try_db(lambda: self.db["sys.event"].count_documents(
            {"name": "complete_job", "data._id": {"$in": ids}, "created": {"$gt": since}},
            limit=1), 0))


def fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


def job_id(reply: dict[str, Any]) -> Any:
    from bson import ObjectId

    data = reply.get("data") or {}
    return ObjectId(str(data.get("_id") or data.get("id")))


# Faults ----------------------------------------------------------------------------
@dataclass
class Outcome:
    fault: str
    jobs: int = 0
    lost: int = 0
    twice: int = 0
    errored: int = 0
    recovery_s: float | None = None
    extra_runs: int = 0
    failed_attempts: int = 0
    put_back: int = 0  # jobs a sweep took from a silent worker (its lease ran out)
    unfinished: int = 0  # still in sys.queue when the script stopped waiting
    notes: list[str] = field(default_factory=list)
    lost_acknowledged: int = 0  # enqueues the API confirmed that are not stored
    recovered: str = ""  # the parts of the recovery time
    recovery_limit_s: float | None = None  # the most the recovery may take, if any

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0 and self.lost_acknowledged == 0 and self.unfinished == 0
            and self.twice == 0
            and self.errored == 0 and self.recovery_s is not None
            and (self.recovery_limit_s is None or self.recovery_s <= self.recovery_limit_s))


class Chaos:
    def __init__(self, lab: Lab, observer: Observer, workers: list[Host], api: Host,
                 database: Host, args: argparse.Namespace) -> None:
        self.lab, self.obs, self.workers, self.api, self.database = \
            lab, observer, workers, api, database
        self.args = args

    # helpers
    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)

    def wait_holding(self, ids: list[Any], worker: Host | None = None,
                     limit_s: float = 60.0) -> list[Any]:
        """Wait until `worker` (or any worker) runs jobs of the batch; those jobs."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            held = self.obs.holders(ids)
            if worker is None and held:
                return [j for jobs in held.values() for j in jobs]
            if worker is not None and held.get(worker.pid):
                return held[worker.pid]
            time.sleep(0.1)
        return []

    def recovery(self, outcome: Outcome, ids: list[Any], lifted_at: Any, lifted: float,
                 workers: list[Host] | None = None) -> None:
        """Seconds from lifting the fault until the API answers /health with 200 and
        every worker host (or `workers`) has claimed a job again: the system works
        again. Probe jobs keep work waiting until they have; they join `ids`, to be
        checked with the batch. Also: when a job first completes after the lift."""
        waiting = {w.pid for w in (self.workers if workers is None else workers)}
        api_s = claims_s = job_s = None
        probes: list[Any] = []
        while time.monotonic() - lifted < RECOVERY_LIMIT_S and (
                api_s is None or claims_s is None or job_s is None):
            if api_s is None and self.obs.http("GET", "/api/v1/health", timeout_s=5)[0] == 200:
                api_s = time.monotonic() - lifted
            if api_s is not None and claims_s is None:
                self.feed(probes)
                waiting -= self.obs.claimed_since(waiting, lifted_at)
                if not waiting:
                    claims_s = time.monotonic() - lifted
            if job_s is None and self.obs.completed_since(ids + probes, lifted_at):
                job_s = time.monotonic() - lifted
            time.sleep(0.05)
        ids.extend(probes)
        if api_s is not None and claims_s is not None:
            outcome.recovery_s = max(api_s, claims_s)
        outcome.recovered = (f"API answers after {fmt(api_s)}, every worker claims again "
                             f"after {fmt(claims_s)}, first job done after {fmt(job_s)}")

    def feed(self, probes: list[Any]) -> None:
        """Keep a job waiting for each worker slot, so that a worker that works again
        shows it by claiming one."""
        slots = len(self.workers) * WORKER_CONCURRENCY
        pending = self.obs.try_db(lambda: self.obs.db["sys.queue"].count_documents(
            {"_id": {"$in": probes}, "state": "pending"}), slots)
        for _ in range(slots - pending):
            status, reply, _ = self.obs.http("POST", "/api/v1/jobs", {
                "name": JOB, "args": {"db_url": self.obs.db_url, "sleep": PROBE_SLEEP_S}},
                timeout_s=5)
            if status not in (200, 201):  # 200 where core4 compatibility answers so
                return
            probes.append(job_id(reply))

    def settle(self, ids: list[Any]) -> None:
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline and self.obs.unfinished(ids):
            time.sleep(0.25)

    def check(self, outcome: Outcome, ids: list[Any]) -> Outcome:
        db = self.obs.db
        outcome.jobs = len(ids)
        journal = {d["_id"]: d["state"] for d in db["sys.journal"].find(
            {"_id": {"$in": ids}}, {"state": 1})}
        waiting = {d["_id"] for d in db["sys.queue"].find({"_id": {"$in": ids}}, {"_id": 1})}
        outcome.lost = sum(1 for i in ids if i not in journal and i not in waiting)
        outcome.unfinished = len(waiting)
        outcome.errored = sum(1 for state in journal.values() if state != "complete")
        completes: dict[Any, int] = {}
        for event in db["sys.event"].find({"name": "complete_job", "data._id": {"$in": ids}},
                                          {"data._id": 1}):
            completes[event["data"]["_id"]] = completes.get(event["data"]["_id"], 0) + 1
        outcome.twice = sum(1 for n in completes.values() if n > 1)
        outcome.put_back = db["sys.event"].count_documents(
            {"name": "reset_job", "data._id": {"$in": ids}})
        failures = list(db["sys.event"].find(
            {"name": {"$in": ["failed_job", "failed_start"]}, "data._id": {"$in": ids}},
            {"data.error": 1}))
        outcome.failed_attempts = len(failures)
        for error in sorted({str(f["data"].get("error", "")).strip().splitlines()[-1][:160]
                             for f in failures if f["data"].get("error")}):
            outcome.notes.append(f"an attempt failed: {error}")
        runs: dict[Any, int] = {}
        for run_doc in db["chaos.runs"].find({"job_id": {"$in": ids}}, {"job_id": 1}):
            runs[run_doc["job_id"]] = runs.get(run_doc["job_id"], 0) + 1
        outcome.extra_runs = sum(n - 1 for n in runs.values() if n > 1)
        return outcome

    def batch(self, tag: str, count: int | None = None) -> list[Any]:
        return self.obs.enqueue(tag, count or self.args.jobs, self.args.sleep)

    # the faults
    def partition(self, name: str, cut_s: float) -> Outcome:
        outcome = Outcome(name)
        ids = self.batch(name)
        worker = self.workers[0]
        held = self.wait_holding(ids, worker)
        if not held:
            outcome.notes.append("the worker never held a job")
        self.lab.cut(worker.name)
        time.sleep(cut_s)
        lifted_at, lifted = self.now(), time.monotonic()
        self.lab.mend(worker.name)
        self.recovery(outcome, ids, lifted_at, lifted, [worker])
        self.settle(ids)
        if held:
            moved = self.obs.db["sys.event"].count_documents(
                {"name": "reset_job", "data._id": {"$in": held}})
            outcome.notes.append(f"cut {cut_s:.0f}s (lease {self.args.lease:.0f}s) while it ran "
                                 f"{len(held)} jobs; of them put back for others: {moved}")
            if cut_s > self.args.lease:
                outcome.notes.append("its executors of moved jobs stopped: " + (
                    "yes" if self.executors_stopped(worker, held) else "NO"))
        return self.check(outcome, ids)

    def connect_ms(self, host: Host, address: str, port: int) -> str:
        """The median time a TCP connection from `host` takes (one round trip)."""
        probe = ("import socket, statistics, time\n"
                 "times = []\n"
                 "for _ in range(7):\n"
                 "    t = time.monotonic()\n"
                 f"    socket.create_connection(('{address}', {port}), 5).close()\n"
                 "    times.append(time.monotonic() - t)\n"
                 "print(round(statistics.median(times) * 1000))")
        done = run("ip", "netns", "exec", self.lab.ns(host.name), sys.executable, "-c", probe,
                   check=False)
        return f"{done.stdout.strip()} ms" if done.returncode == 0 else "(probe failed)"

    def executors_stopped(self, worker: Host, held: list[Any]) -> bool:
        """The cut worker no longer lists, as running, a job that ran elsewhere."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = self.obs.db["sys.worker"].find_one({"pid": worker.pid}) or \
                self.obs.db["sys.worker"].find_one({"host": worker.name}) or {}
            listed = {j.get("_id") for j in doc.get("jobs") or []}
            if not listed & set(held):
                return True
            time.sleep(0.5)
        return False

    def slow_link(self) -> Outcome:
        outcome = Outcome("slow-link")
        worker = self.workers[-1]
        how = self.lab.slow(worker.name, 100, 5)
        started = time.monotonic()
        try:
            measured = self.connect_ms(worker, f"{SUBNET}.1", DB_PORT)
            ids = self.batch("slow-link")
            held = self.wait_holding(ids, worker)
            self.settle(ids)
        finally:
            self.lab.unslow(worker.name)
        lifted_at, lifted = self.now(), time.monotonic()
        self.recovery(outcome, ids, lifted_at, lifted, [worker])
        self.settle(ids)  # the probe jobs too
        outcome.notes.append(f"100 ms delay and 5 % loss on {worker.name}'s link ({how}) "
                             f"for the whole batch, {time.monotonic() - started:.0f}s; "
                             f"connecting to the database took {measured} there; it was "
                             f"running {len(held)} of its jobs at once")
        return self.check(outcome, ids)

    def db_pause(self, name: str, pause_s: float) -> Outcome:
        outcome = Outcome(name, recovery_limit_s=self.args.recovery_limit or None)
        ids = self.batch(name)
        self.wait_holding(ids)
        self.database.signal(signal.SIGSTOP)
        probes = self.probe_api(pause_s)
        lifted_at, lifted = self.now(), time.monotonic()
        self.database.signal(signal.SIGCONT)
        self.recovery(outcome, ids, lifted_at, lifted)
        self.settle(ids)
        outcome.notes.append(probes)
        return self.check(outcome, ids)

    def probe_api(self, duration_s: float) -> str:
        """Ask the API while the database does not answer: each reply must be a 503
        saying so, within the requests' budget."""
        deadline = time.monotonic() + duration_s
        replies: list[tuple[int, float, str]] = []
        while time.monotonic() < deadline:
            for path in ("/api/v1/jobs", "/api/v1/health"):
                status, reply, took = self.obs.http("GET", path, timeout_s=10)
                replies.append((status, took, str(reply.get("message", ""))))
            time.sleep(0.5)
        refused = [r for r in replies if r[0] != 503 or "does not answer" not in r[2]]
        times = sorted(took for _, took, _ in replies) or [0.0]
        return (f"API while the database is paused: {len(replies)} requests, "
                f"{len(refused)} not a 503 saying so; median {times[len(times) // 2]:.1f}s, "
                f"slowest {times[-1]:.1f}s")

    def api_kill(self) -> Outcome:
        """POST jobs through the API without pause; SIGKILL the API server mid-stream
        and start it again. Every acknowledged job must exist and complete once."""
        outcome = Outcome("api-kill")
        acknowledged: list[Any] = []
        unanswered = 0
        stop = threading.Event()

        def post() -> None:
            nonlocal unanswered
            while not stop.is_set():
                status, reply, _ = self.obs.http("POST", "/api/v1/jobs", {
                    "name": JOB, "args": {"db_url": self.obs.db_url, "sleep": self.args.sleep}},
                    timeout_s=5)
                if status in (200, 201):
                    acknowledged.append(job_id(reply))
                else:
                    unanswered += 1
                    time.sleep(0.1)

        began = self.now()
        poster = threading.Thread(target=post, daemon=True)
        poster.start()
        while len(acknowledged) < max(3, self.args.jobs // 2) and poster.is_alive():
            time.sleep(0.05)
        self.api.kill()
        lifted_at, lifted = self.now(), time.monotonic()
        self.api.start()
        time.sleep(0.1)
        while self.obs.http("GET", "/api/v1/health", timeout_s=2)[0] != 200 and \
                time.monotonic() - lifted < RECOVERY_LIMIT_S:
            time.sleep(0.05)
        before = len(acknowledged)
        while len(acknowledged) < before + 3 and time.monotonic() - lifted < RECOVERY_LIMIT_S:
            time.sleep(0.05)
        stop.set()
        poster.join(10)
        # a request cut off by the kill may still have stored its job: it is a job like
        # any other (the client, not knowing, might send it again)
        unacknowledged = [d["_id"] for name in ("sys.queue", "sys.journal")
                          for d in self.obs.db[name].find(
                              {"name": JOB, "enqueued.at": {"$gte": began},
                               "_id": {"$nin": acknowledged}}, {"_id": 1})]
        ids = list(acknowledged) + unacknowledged
        self.recovery(outcome, ids, lifted_at, lifted)
        self.settle(ids)
        in_db = self.obs.db["sys.queue"].count_documents({"_id": {"$in": acknowledged}}) + \
            self.obs.db["sys.journal"].count_documents({"_id": {"$in": acknowledged}})
        outcome.lost_acknowledged = len(acknowledged) - in_db
        outcome.notes.append(f"SIGKILL mid-stream, started again at once (recovery includes "
                             f"its start-up); {len(acknowledged)} acknowledged enqueues, "
                             f"{in_db} of them stored; {unanswered} requests cut off or "
                             f"refused, of which {len(unacknowledged)} stored their job")

        return self.check(outcome, ids)

    def db_restart(self) -> Outcome:
        outcome = Outcome("db-restart", recovery_limit_s=self.args.recovery_limit or None)
        ids = self.batch("db-restart")
        self.wait_holding(ids)
        self.database.stop()
        time.sleep(2)
        started = time.monotonic()
        self.database.start()
        wait_for_port(self.lab, "ctl", f"{SUBNET}.1", DB_PORT)
        # recovery counts from the moment the database answers again, not its start-up
        lifted_at, lifted = self.now(), time.monotonic()
        self.recovery(outcome, ids, lifted_at, lifted)
        outcome.notes.append(f"stopped (SIGTERM) while workers ran jobs, started again "
                             f"2s later; it took {lifted - started:.1f}s to listen")
        self.settle(ids)
        return self.check(outcome, ids)

    def run(self, fault: str) -> Outcome:
        if fault == "partition-long":
            return self.partition(fault, self.args.lease * 2)
        if fault == "partition-short":
            return self.partition(fault, self.args.lease / 3)
        if fault == "slow-link":
            return self.slow_link()
        if fault == "db-pause-short":
            return self.db_pause(fault, 5.0)
        if fault == "db-pause-long":
            return self.db_pause(fault, 60.0)
        if fault == "api-kill":
            return self.api_kill()
        return self.db_restart()


def report(outcome: Outcome) -> None:
    recovery = fmt(outcome.recovery_s) if outcome.recovery_s is not None else "NONE"
    if outcome.recovery_limit_s is not None:
        recovery += f" (limit {outcome.recovery_limit_s:g}s)"
    lost = outcome.lost + outcome.lost_acknowledged
    print(f"{outcome.fault:16} lost {lost}  completed twice {outcome.twice}  ended in error "
          f"{outcome.errored}  recovery {recovery}  " + ("OK" if outcome.ok else "FAILED"))
    for note in [f"{outcome.jobs} jobs: put back {outcome.put_back}, ran again "
                 f"{outcome.extra_runs}, failed attempts {outcome.failed_attempts}"
                 + (f", STILL UNFINISHED {outcome.unfinished}" if outcome.unfinished else ""),
                 f"recovered: {outcome.recovered}", *outcome.notes]:
        print(f"{'':16} {note}")


# Set-up ----------------------------------------------------------------------------
def environment(db_url: str, var: Path, api_host: str, secret: str, lease_s: float
                ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONQ_")}
    env.update({
        "MONQ_MONGODB_URL": db_url, "MONQ_MONGODB_EMBEDDED": "never",
        "MONQ_PATHS_VAR": str(var), "MONQ_LOG_LEVEL": "WARNING",
        "MONQ_QUEUE_ZOMBIE_TIME_S": str(lease_s), "MONQ_QUEUE_SWEEP_INTERVAL_S": "1",
        "MONQ_WORKER_HEARTBEAT_S": "0.5", "MONQ_WORKER_POLL_MAX_S": "0.3",
        "MONQ_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY), "MONQ_WORKER_DEAD_AFTER_S": "30",
        "MONQ_API_HOST": api_host, "MONQ_API_PORT": str(API_PORT),
        "MONQ_API_ADMIN_PASSWORD": ADMIN_PASSWORD, "MONQ_API_SECRET": secret,
        "PYTHONUNBUFFERED": "1"})
    return env


def wait_for_port(lab: Lab, host: str, address: str, port: int, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    probe = f"import socket; socket.create_connection(('{address}', {port}), 1).close()"
    while time.monotonic() < deadline:
        if run("ip", "netns", "exec", lab.ns(host), sys.executable, "-c", probe,
               check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise SystemExit(f"{address}:{port} did not answer within {limit_s:.0f}s")


@contextlib.contextmanager
def fleet(lab: Lab, args: argparse.Namespace, work: Path) -> Iterator[Chaos]:
    monq = str(Path(sys.executable).parent / "monq")
    db_address, api_address = f"{SUBNET}.1", f"{SUBNET}.2"
    db_url = f"mongodb://{db_address}:{DB_PORT}/chaosnet"
    secret = secrets.token_urlsafe(48)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    hosts: list[Host] = []
    database = Host(lab, "db", [sys.executable, "-m", "secantus", "--host", db_address,
                                "--port", str(DB_PORT), "--storage-path", str(work / "db"),
                                "--log-level", "WARNING"], dict(os.environ), logs)
    hosts.append(database)
    try:
        database.start()
        wait_for_port(lab, "api", db_address, DB_PORT)
        api = Host(lab, "api", [monq, "serve"],
                   environment(db_url, work / "api", api_address, secret, args.lease), logs)
        hosts.append(api)
        api.start()
        wait_for_port(lab, "ctl", api_address, API_PORT)
        workers = []
        for i in range(args.workers):
            name = f"w{i + 1}"
            worker = Host(lab, name, [monq, "worker"],
                          environment(db_url, work / name, api_address, secret, args.lease), logs)
            worker.start()
            workers.append(worker)
            hosts.append(worker)
        observer = Observer(db_url, f"http://{api_address}:{API_PORT}")
        observer.login()
        yield Chaos(lab, observer, workers, api, database, args)
    finally:
        for host in reversed(hosts):
            host.stop()


def controller(args: argparse.Namespace) -> int:
    """Runs inside the script's own namespace (ctl): everything but the set-up."""
    lab = Lab(args.prefix, {h: "" for h in args.hosts.split(",")})
    work = Path(args.work)
    faults = list(FAULTS) if args.faults == "all" else \
        list(QUICK_FAULTS) if args.faults == "quick" else args.faults.split(",")
    outcomes = []
    with fleet(lab, args, work) as chaos:
        print(f"hosts: db {SUBNET}.1, api {SUBNET}.2, workers "
              + ", ".join(f"{SUBNET}.{11 + i}" for i in range(args.workers))
              + f"; lease {args.lease:g}s", flush=True)
        for fault in faults:
            outcome = chaos.run(fault)
            report(outcome)
            sys.stdout.flush()
            outcomes.append(outcome)
    ok = all(o.ok for o in outcomes)
    print("result: " + ("OK" if ok else "FAILED")
          + (f"   (the hosts' logs: {work / 'logs'})" if args.keep_logs else ""))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default="all",
                        help=f"comma-separated, 'quick' ({','.join(QUICK_FAULTS)}) or 'all' "
                             f"({','.join(FAULTS)})")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=24, help="jobs per fault")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each job works")
    parser.add_argument("--recovery-limit", type=float, default=RECOVERY_LIMIT_DB_S,
                        help="seconds the system may take to work again once the database "
                             "answers (database faults; 0: no limit)")
    parser.add_argument("--lease", type=float, default=LEASE_S,
                        help="queue.zombie_time_s: how long a silent worker keeps its jobs")
    parser.add_argument("--keep-logs", default=None, help="keep the hosts' logs here")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--emulate-link", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--plain-checksums", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--hosts", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulate_link:
        host_side, switch_side, delay, loss = args.emulate_link
        emulate_link(host_side, switch_side, float(delay), float(loss), os.getpid())
        return 0
    if args.plain_checksums:
        plain_checksums(args.plain_checksums)
        return 0
    if args.inside:
        return controller(args)
    unknown = [f for f in args.faults.split(",") if f not in (*FAULTS, "all", "quick")]
    if unknown:
        parser.error(f"unknown fault {unknown[0]!r}")
    why = requirements()
    if why:
        print(f"chaos_network: {why}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    hosts = {"db": f"{SUBNET}.1", "api": f"{SUBNET}.2", "ctl": f"{SUBNET}.100",
             **{f"w{i + 1}": f"{SUBNET}.{11 + i}" for i in range(args.workers)}}
    lab = Lab(f"mqn{os.getpid()}")
    work = Path(args.keep_logs) if args.keep_logs else Path(tempfile.mkdtemp(prefix="mqn-"))

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # so that the namespaces are removed on the way out

    signal.signal(signal.SIGTERM, terminated)
    try:
        lab.build(hosts)
        command = [sys.executable, os.path.abspath(__file__), "--inside", "--prefix",
                   lab.prefix, "--hosts", ",".join(hosts), "--work", str(work),
                   "--faults", args.faults, "--keep-logs", args.keep_logs or "",
                   "--workers", str(args.workers), "--jobs",
                   str(args.jobs), "--sleep", str(args.sleep), "--lease", str(args.lease),
                   "--recovery-limit", str(args.recovery_limit)]
        inner = subprocess.Popen(["ip", "netns", "exec", lab.ns("ctl"), *command])
        try:
            return inner.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                inner.send_signal(signal.SIGINT)
            try:
                inner.wait(30)
            except subprocess.TimeoutExpired:
                inner.kill()
            return 130
    finally:
        lab.destroy()
        if not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
