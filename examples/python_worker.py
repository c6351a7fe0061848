"""A taskbus worker in Python (pyzmq + msgpack), written from docs/PROTOCOL.md alone.

Run with: python3 examples/python_worker.py --endpoint tcp://127.0.0.1:5556 --topic T [--next-topic T2] [--stage NAME] [--capacity N] [--fail-every K] [--exit-after N]

The stage is the function `handle(task)` below: replace it (or import this file
and call `main(handler=my_handler)`) to run a custom stage. It gets one task as a
dict (`guid`, `topic`, `body`, `attempt`, ...) and returns the next stage's
envelopes, a list of `{"body": {...}}` maps (optionally with `topic`, `guid`,
`timeout`, `max_retry`); an empty list ends the pipeline for this task. Raise
`TaskError(message, retryable=...)` to FAIL the task; any other exception FAILs
it as retryable.

What the runtime does (docs/PROTOCOL.md, "Worker protocol"):

- a DEALER socket with a fixed routing identity (`--identity`, by default
  STAGE-HOST-PID), so the broker knows it again after a reconnect;
- READY with the topics, the stage, the credit (`--capacity`) and the optional
  next topic; the broker never has more than `capacity` tasks out to us, and they
  run on a pool of `capacity` threads;
- one DONE or FAIL per task, HEARTBEAT every `--heartbeat` seconds;
- the broker's HEARTBEAT, DISCONNECT (send READY again), CANCEL (drop the tasks,
  answer nothing) and ERROR (log it);
- a broker that says nothing for `--liveness` intervals is taken for dead: the
  socket is closed and a new one opened after a delay (`--reconnect-min` doubling
  up to `--reconnect-max`, back to the minimum once the broker speaks), then READY
  again; results finished meanwhile are sent after that READY;
- SIGINT/SIGTERM: running tasks get `--grace` seconds to finish and are answered,
  then DISCONNECT and exit 0 (a second signal skips the wait); `--exit-after N`
  does the same after N tasks were answered.

ZeroMQ's own heartbeats (ZMQ_HEARTBEAT_*) must stay off: the broker does not
know the ZMTP PING command.

stdout gets one line, `ready <identity>`, once the first READY is sent; the log
goes to stderr.
"""

import argparse
import logging
import os
import signal
import socket as socketlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import zmq

PROTOCOL = "taskbus/1"

log = logging.getLogger("python_worker")


class TaskError(Exception):
    """Raised by a handler to FAIL a task; `retryable=False` dead-letters it at once."""

    def __init__(self, message, retryable=True):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


# --------------------------------------------------------------------------
# The stage. Replace this function with your own.
# --------------------------------------------------------------------------


def handle(task):
    """Returns the task's body unchanged, plus `handled_by = "python"`, as one
    envelope for the next stage (the broker routes it to `body.callback.topic`,
    else to `--next-topic`)."""
    body = task.get("body")
    out = dict(body) if isinstance(body, dict) else {"value": body}
    out["handled_by"] = "python"
    return [{"body": out}]


def failing_every(k, handler):
    """Wraps `handler` so that every k-th call FAILs (retryable); for tests."""
    lock = threading.Lock()
    calls = [0]

    def wrapped(task):
        with lock:
            calls[0] += 1
            n = calls[0]
        if n % k == 0:
            raise TaskError(f"fail-every {k}: call {n} fails on purpose", retryable=True)
        return handler(task)

    return wrapped


# --------------------------------------------------------------------------
# The runtime.
# --------------------------------------------------------------------------


def _envelopes(result):
    """The handler's return value as a list of envelopes."""
    if result is None:
        return []
    if isinstance(result, dict):
        result = [result]
    envelopes = []
    for item in result:
        if not isinstance(item, dict) or "body" not in item:
            raise TypeError(f"a handler must return envelopes {{'body': ...}}, got {item!r}")
        envelopes.append(item)
    return envelopes


class Worker:
    def __init__(self, options, handler):
        self.o = options
        self.handler = handler
        self.identity = options.identity
        self.context = zmq.Context()
        self.socket = None
        self.poller = None
        self.pool = ThreadPoolExecutor(max_workers=options.capacity, thread_name_prefix="stage")
        self.running = {}  # guid -> (future, task)
        self.held = {}  # guid -> task (--hold: never answered)
        self.cancelled = set()  # guids whose result must not be sent
        self.outbox = []  # results finished while disconnected
        self.answered = 0
        self.ready_announced = False
        self.stop_signals = 0
        self.stopping_since = None
        self.backoff = options.reconnect_min
        self.reconnect_at = None  # set while disconnected
        self.last_heard = 0.0
        self.next_heartbeat = 0.0
        # Finished tasks and signals wake the poll loop through this pipe.
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    # -- plumbing ----------------------------------------------------------

    def _wake(self, *_):
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _drain_wake(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def on_signal(self, signum, _frame):
        self.stop_signals += 1
        log.info("signal %d: stopping%s", signum, " now" if self.stop_signals > 1 else "")
        self._wake()

    def _open(self):
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.identity.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.o.endpoint)
        self.socket = sock
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(self.wake_r, zmq.POLLIN)

    def _close(self):
        if self.socket is not None:
            self.socket.close(linger=0)
        self.socket = None
        self.poller = zmq.Poller()
        self.poller.register(self.wake_r, zmq.POLLIN)

    def _send(self, message):
        """Sends one message; False when it could not be queued (no socket, or
        the socket's queue is full because the broker is away)."""
        if self.socket is None:
            return False
        try:
            self.socket.send(msgpack.packb(message, use_bin_type=True), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _ready(self):
        message = {
            "type": "ready",
            "protocol": PROTOCOL,
            "worker_id": self.identity,
            "stage": self.o.stage,
            "topics": self.o.topic,
            "capacity": self.o.capacity,
        }
        if self.o.next_topic:
            message["next_topic"] = self.o.next_topic
        self._send(message)
        log.info("READY sent to %s (topics %s, capacity %d)", self.o.endpoint, self.o.topic, self.o.capacity)
        if not self.ready_announced:
            self.ready_announced = True
            print(f"ready {self.identity}", flush=True)
        # Results finished while disconnected: the broker still completes them.
        outbox, self.outbox = self.outbox, []
        for message in outbox:
            self._send_result(message)

    def _connect(self):
        self._open()
        now = time.monotonic()
        self.reconnect_at = None
        self.last_heard = now  # the broker gets `liveness` intervals to answer
        self.next_heartbeat = now + self.o.heartbeat
        self._ready()

    def _lost(self):
        """The broker said nothing for `liveness` intervals: drop the socket and
        reconnect after the back-off delay."""
        log.warning(
            "broker silent for %.1f s: reconnecting in %.2f s",
            self.o.liveness * self.o.heartbeat,
            self.backoff,
        )
        self._close()
        self.reconnect_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.o.reconnect_max)

    # -- tasks -------------------------------------------------------------

    def _send_result(self, message):
        if not self._send(message):
            self.outbox.append(message)

    def _on_tasks(self, tasks):
        for task in tasks:
            guid = task.get("guid")
            if self.stopping_since is not None:
                # Not started: the DISCONNECT we are about to send puts it back.
                log.info("task %s not started: stopping", guid)
                continue
            log.info("task %s on %s (attempt %s)", guid, task.get("topic"), task.get("attempt"))
            if self.o.hold:
                self.held[guid] = task
                continue
            self.cancelled.discard(guid)
            future = self.pool.submit(self.handler, task)
            future.add_done_callback(self._wake)
            self.running[guid] = (future, task)
        busy = len(self.running) + len(self.held)
        if busy > self.o.capacity:
            log.warning("%d tasks on hand, more than the credit %d", busy, self.o.capacity)

    def _on_cancel(self, guids, reason):
        for guid in guids:
            if self.held.pop(guid, None) is not None:
                log.info("task %s cancelled (%s)", guid, reason)
            entry = self.running.get(guid)
            if entry is not None:
                log.info("task %s cancelled (%s)", guid, reason)
                if entry[0].cancel():
                    del self.running[guid]
                else:
                    self.cancelled.add(guid)  # running: its result is dropped

    def _collect(self):
        for guid, (future, task) in list(self.running.items()):
            if not future.done():
                continue
            del self.running[guid]
            if guid in self.cancelled:
                self.cancelled.discard(guid)
                continue
            try:
                message = {"type": "done", "guid": guid, "next": _envelopes(future.result())}
                if self.o.next_topic:
                    # Carried in every DONE: a restarted broker may read it before READY.
                    message["next_topic"] = self.o.next_topic
                log.info("task %s done: %d next", guid, len(message["next"]))
            except TaskError as e:
                message = {"type": "fail", "guid": guid, "error": e.message, "retryable": e.retryable}
                log.info("task %s failed (retryable=%s): %s", guid, e.retryable, e.message)
            except Exception as e:  # noqa: BLE001 - any handler error FAILs the task
                message = {"type": "fail", "guid": guid, "error": f"{type(e).__name__}: {e}", "retryable": True}
                log.exception("task %s raised", guid)
            self._send_result(message)
            self.answered += 1

    # -- messages from the broker --------------------------------------------

    def _on_message(self, frames):
        self.last_heard = time.monotonic()
        self.backoff = self.o.reconnect_min
        try:
            message = msgpack.unpackb(frames[-1], raw=False)
            kind = message.get("type")
        except Exception:  # noqa: BLE001
            log.warning("unreadable message from the broker: %r", frames[-1][:100])
            return
        if kind == "task":
            self._on_tasks(message.get("tasks") or [])
        elif kind == "heartbeat":
            pass
        elif kind == "disconnect":
            log.warning("broker says disconnect (%s): registering again", message.get("reason"))
            self._ready()
        elif kind == "cancel":
            self._on_cancel(message.get("guids") or [], message.get("reason"))
        elif kind == "error":
            log.error("broker could not read our last message: %s (%s)", message.get("error"), message.get("code"))
        else:
            log.warning("unknown message type from the broker: %r", kind)

    def _receive(self):
        while self.socket is not None:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_message(frames)

    # -- the loop ------------------------------------------------------------

    def _wants_exit(self, now):
        if self.stop_signals > 1:
            return True
        if self.stopping_since is None:
            return False
        return not self.running or now - self.stopping_since >= self.o.grace

    def run(self):
        self._connect()
        while True:
            now = time.monotonic()
            if self.stopping_since is None and (
                self.stop_signals > 0 or (self.o.exit_after and self.answered >= self.o.exit_after)
            ):
                self.stopping_since = now
                if self.running:
                    log.info("waiting up to %.1f s for %d running tasks", self.o.grace, len(self.running))
            if self._wants_exit(now):
                break
            if self.reconnect_at is not None:
                deadline = self.reconnect_at
            else:
                deadline = min(self.next_heartbeat, self.last_heard + self.o.liveness * self.o.heartbeat)
            if self.stopping_since is not None:
                deadline = min(deadline, self.stopping_since + self.o.grace)
            timeout_ms = max(0, int((deadline - now) * 1000) + 1)
            events = dict(self.poller.poll(timeout_ms))
            if self.wake_r in events:
                self._drain_wake()
            if self.socket is not None and self.socket in events:
                self._receive()
            self._collect()
            now = time.monotonic()
            if self.reconnect_at is not None:
                if now >= self.reconnect_at:
                    self._connect()
                continue
            if now >= self.next_heartbeat:
                self._send({"type": "heartbeat"})
                self.next_heartbeat = now + self.o.heartbeat
            if now - self.last_heard >= self.o.liveness * self.o.heartbeat:
                self._lost()
        return self._shutdown()

    def _shutdown(self):
        self._collect()
        if self.running:
            log.warning("%d tasks still running are abandoned", len(self.running))
        if self.socket is not None:
            self._send({"type": "disconnect"})
            # Give the DISCONNECT (and the last results) a moment to leave.
            self.socket.close(linger=1000)
            self.socket = None
        log.info("stopped after %d tasks", self.answered)
        abandoned = bool(self.running)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.context.term()
        return abandoned


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="A taskbus worker in Python.")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the broker's worker endpoint")
    p.add_argument("--topic", action="append", required=True, help="a topic to take tasks from (repeatable)")
    p.add_argument("--next-topic", help="where DONE envelopes go when they name no body.callback.topic")
    p.add_argument("--stage", default="python", help="the stage name sent in READY")
    p.add_argument("--identity", help="the fixed routing identity (default: STAGE-HOST-PID)")
    p.add_argument("--capacity", type=int, default=1, help="credit: tasks run at once")
    p.add_argument("--fail-every", type=int, default=0, metavar="K", help="FAIL (retryable) every K-th task")
    p.add_argument("--exit-after", type=int, default=0, metavar="N", help="DISCONNECT and exit after answering N tasks (DONE or FAIL)")
    p.add_argument("--hold", action="store_true", help="take tasks and never answer them (tests)")
    p.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, seconds (the broker's)")
    p.add_argument("--liveness", type=int, default=3, help="silent intervals before the broker is taken for dead")
    p.add_argument("--reconnect-min", type=float, default=1.0, help="first reconnect delay, seconds")
    p.add_argument("--reconnect-max", type=float, default=32.0, help="longest reconnect delay, seconds")
    p.add_argument("--grace", type=float, default=10.0, help="seconds running tasks get on shutdown")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    o = p.parse_args(argv)
    if o.capacity < 1:
        p.error("--capacity must be >= 1")
    if o.heartbeat <= 0 or o.liveness < 1:
        p.error("--heartbeat must be > 0 and --liveness >= 1")
    if o.reconnect_min <= 0 or o.reconnect_max < o.reconnect_min:
        p.error("need 0 < --reconnect-min <= --reconnect-max")
    if o.identity is None:
        o.identity = f"{o.stage}-{socketlib.gethostname()}-{os.getpid()}"
    return o


def main(argv=None, handler=handle):
    options = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if options.verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s {options.identity}: %(message)s",
    )
    if options.fail_every > 0:
        handler = failing_every(options.fail_every, handler)
    worker = Worker(options, handler)
    signal.signal(signal.SIGINT, worker.on_signal)
    signal.signal(signal.SIGTERM, worker.on_signal)
    abandoned = worker.run()
    sys.stdout.flush()
    sys.stderr.flush()
    if abandoned:
        # A handler thread is still busy; do not wait for it at interpreter exit.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
