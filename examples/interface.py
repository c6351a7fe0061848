"""The seed's interface script for taskbus (pyzmq + msgpack), from docs/PROTOCOL.md.

Run with: python3 examples/interface.py --endpoint tcp://127.0.0.1:5555 COMMAND ...

Commands (replies are printed to stdout as JSON):

    put TOPIC JSON_BODY [--guid G] [--lease SECS] [--max-retry N]
    get_task TOPIC [--count N]     the seed's get_task: a list of leased tasks
    get_size TOPIC                 the seed's get_size: a number, or "invalid queue"
    ack GUID...                    end the leases taken with get_task
    stats                          per-topic and per-worker counters

Options (before or after the command): `--json` speaks JSON instead of
MessagePack; `--timeout SECS` (default 5) is how long to wait for a reply;
`--retries N` (default 0) re-sends on a fresh socket that many times; `--log PATH`
(default `myapp.log` in the current directory) is the log file.

Never waits forever (the ZeroMQ guide's "lazy pirate"): a request without a reply
in time closes its socket (linger 0) and, once the retries are spent, the script
exits with status 2. An error reply from the broker (`{"error", "code"}`) is
printed and exits with status 1.

As a module:

    from interface import Interface
    with Interface("tcp://127.0.0.1:5555") as bus:
        bus.put("jm_crawl", {"urls": []})
        tasks = bus.get_task("jm_crawl", count=10)
        bus.ack(*[t["guid"] for t in tasks])
"""

import argparse
import json
import logging
import sys
import uuid

import msgpack
import zmq

log = logging.getLogger("interface")


class BrokerError(Exception):
    """The broker answered `{"error": ..., "code": ...}`."""

    def __init__(self, reply):
        super().__init__(f"{reply.get('code')}: {reply.get('error')}")
        self.code = reply.get("code")
        self.error = reply.get("error")
        self.reply = reply


class BrokerTimeout(Exception):
    """No reply within the timeout (after all retries)."""


class Interface:
    """A REQ client of the broker's client endpoint."""

    def __init__(self, endpoint="tcp://127.0.0.1:5555", use_json=False, timeout=5.0, retries=0, context=None):
        self.endpoint = endpoint
        self.use_json = use_json
        self.timeout = timeout
        self.retries = retries
        self.context = context or zmq.Context.instance()
        self.socket = None

    # -- the lazy pirate -----------------------------------------------------

    def _open(self):
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, max(1, int(self.timeout * 1000)))
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout * 1000)))
        sock.connect(self.endpoint)
        return sock

    def close(self):
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def _encode(self, request):
        if self.use_json:
            return json.dumps(request).encode()
        return msgpack.packb(request, use_bin_type=True)

    def _decode(self, reply):
        if self.use_json:
            return json.loads(reply)
        return msgpack.unpackb(reply, raw=False)

    def request(self, request):
        """Sends one request; returns the decoded reply. Raises BrokerError on an
        error reply and BrokerTimeout when no reply came in time."""
        payload = self._encode(request)
        for attempt in range(self.retries + 1):
            if self.socket is None:
                self.socket = self._open()
            try:
                self.socket.send(payload)
                reply = self.socket.recv()
            except zmq.Again:
                # A REQ socket that missed its reply cannot be used again.
                self.close()
                log.warning("no reply from %s within %.1f s (try %d of %d)", self.endpoint, self.timeout, attempt + 1, self.retries + 1)
                continue
            value = self._decode(reply)
            log.info("%s -> %s", request.get("type"), _short(value))
            if isinstance(value, dict) and "error" in value and "code" in value:
                raise BrokerError(value)
            return value
        raise BrokerTimeout(f"no reply from {self.endpoint} within {self.timeout:g} s (is the broker running?)")

    # -- the seed's calls ------------------------------------------------------

    def get_task(self, topic, count=1):
        """Up to `count` tasks of `topic` (`[]` when none), leased until acked."""
        return self.request({"type": "get_task", "topic": topic, "count": count})

    def get_size(self, topic):
        """The number of ready tasks, or "invalid queue" for an unknown topic."""
        return self.request({"type": "get_size", "topic": topic})

    # -- admin verbs -----------------------------------------------------------

    def put(self, topic, body, guid=None, timeout=None, max_retry=None):
        """Puts one task; returns its guid."""
        task = {"topic": topic, "body": body}
        if guid is None and self.retries > 0:
            # A re-sent put must not queue the task twice: give it a guid now.
            guid = str(uuid.uuid4())
        if guid is not None:
            task["guid"] = guid
        if timeout is not None:
            task["timeout"] = timeout
        if max_retry is not None:
            task["max_retry"] = max_retry
        return self.put_tasks([task])[0]

    def put_tasks(self, tasks):
        """Puts task maps (`topic`, and optionally `guid`, `body`, `timeout`,
        `max_retry`); returns their guids."""
        return self.request({"type": "put_task", "tasks": list(tasks)})["guids"]

    def ack(self, *guids):
        """Ends leases; returns {"acked": n, "missing": [...]}."""
        return self.request({"type": "ack", "guids": list(guids)})

    def stats(self):
        return self.request({"type": "stats"})


def _short(value, limit=300):
    text = json.dumps(value, default=_bytes, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _bytes(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON: {type(value).__name__}")


def _parser():
    # The common options are accepted before and after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=argparse.SUPPRESS, help="the broker's client endpoint (tcp://127.0.0.1:5555)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="speak JSON instead of MessagePack")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds to wait for a reply (5)")
    common.add_argument("--retries", type=int, default=argparse.SUPPRESS, help="re-sends after a timeout (0)")
    common.add_argument("--log", default=argparse.SUPPRESS, help="log file (myapp.log)")

    p = argparse.ArgumentParser(description="The seed's taskbus client calls.", parents=[common])
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = commands.add_parser("put", parents=[common], help="put one task")
    c.add_argument("topic")
    c.add_argument("body", metavar="JSON_BODY", help="the task body, as JSON")
    c.add_argument("--guid")
    c.add_argument("--lease", type=float, help="the task's lease timeout, seconds")
    c.add_argument("--max-retry", type=int)

    c = commands.add_parser("get_task", parents=[common], help="take up to COUNT tasks")
    c.add_argument("topic")
    c.add_argument("--count", type=int, default=1)

    c = commands.add_parser("get_size", parents=[common], help="the number of ready tasks")
    c.add_argument("topic")

    c = commands.add_parser("ack", parents=[common], help="end leases")
    c.add_argument("guids", nargs="+", metavar="GUID")

    commands.add_parser("stats", parents=[common], help="counters")
    return p


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    defaults = {"endpoint": "tcp://127.0.0.1:5555", "json": False, "timeout": 5.0, "retries": 0, "log": "myapp.log"}
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    bus = Interface(args.endpoint, use_json=args.json, timeout=args.timeout, retries=args.retries)
    try:
        if args.command == "put":
            try:
                body = json.loads(args.body)
            except ValueError as e:
                p.error(f"JSON_BODY is not JSON: {e}")
            guid = bus.put(args.topic, body, guid=args.guid, timeout=args.lease, max_retry=args.max_retry)
            reply = {"guids": [guid]}
        elif args.command == "get_task":
            reply = bus.get_task(args.topic, args.count)
        elif args.command == "get_size":
            reply = bus.get_size(args.topic)
        elif args.command == "ack":
            reply = bus.ack(*args.guids)
        else:
            reply = bus.stats()
    except BrokerTimeout as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokerError as e:
        log.error("refused: %s", e)
        print(json.dumps(e.reply, default=_bytes, ensure_ascii=False))
        print(f"error: the broker refused the request: {e}", file=sys.stderr)
        return 1
    finally:
        bus.close()
    print(json.dumps(reply, default=_bytes, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
