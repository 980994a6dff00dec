"""The swarm sandbox's relay: TCP between the host's loopback and the swarm's network namespace.

The swarm sandbox's replicas and Redis listen on the loopback *of a network namespace* the
sandbox made (sandbox/swarm.py); the simulator, Prometheus, the sample app and every rollout
command stay on the host's loopback. One process joins the two: a socket keeps the namespace
of the thread that created it (io/netns.py), so each route's listener is created in one
namespace and its outgoing connections in the other. No address besides 127.0.0.1 is used on
either side.

Routes (argv, each repeatable):
    --forward HOST_PORT=NS_PORT[,NS_PORT...]   listen on the host, connect inside the namespace;
                                               several targets: round-robin, a refused one skipped
                                               (gateway.url: the load balancer over the replicas)
    --reverse NS_PORT=HOST_PORT                listen inside the namespace, connect on the host
                                               (the replicas reach the simulator)

`python -m rollout_cli.sandbox.relay --netns /var/run/netns/NAME ROUTES`; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence

from rollout_cli.io.netns import setns

HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 3.0
CHUNK = 65536


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _connect_any(targets: Iterator[int], count: int) -> socket.socket | None:
    """The next target that accepts, trying each at most once (a stopped replica is skipped)."""
    for _ in range(count):
        port = next(targets)
        try:
            return socket.create_connection((HOST, port), timeout=CONNECT_TIMEOUT_S)
        except OSError:
            continue
    return None


def _serve(listener: socket.socket, targets: list[int], namespace: str) -> None:
    """Accept forever; connect each client to a target, from `namespace` (this thread and its children live there)."""
    setns(namespace)
    order = itertools.cycle(targets)
    lock = threading.Lock()
    while True:
        client, _ = listener.accept()

        def relay(client: socket.socket = client) -> None:
            with lock:
                upstream = _connect_any(order, len(targets))
            if upstream is None:
                client.close()  # every target refused: the client sees the connection closed
                return
            upstream.settimeout(None)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
            client.close()
            upstream.close()

        threading.Thread(target=relay, daemon=True).start()


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(128)
    return listener


def _route(text: str) -> tuple[int, list[int]]:
    listen, sep, targets = text.partition("=")
    try:
        ports = [int(port) for port in targets.split(",")]
        if not sep or not ports:
            raise ValueError(text)
        return int(listen), ports
    except ValueError:
        raise SystemExit(f"error: route {text!r} is not PORT=PORT[,PORT...]") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout_cli.sandbox.relay")
    parser.add_argument("--netns", required=True, help="the namespace's file (/var/run/netns/NAME)")
    parser.add_argument("--forward", action="append", default=[], help="HOST_PORT=NS_PORT[,NS_PORT...]")
    parser.add_argument("--reverse", action="append", default=[], help="NS_PORT=HOST_PORT")
    args = parser.parse_args(argv)
    own = f"/proc/self/fd/{os.open('/proc/self/ns/net', os.O_RDONLY)}"  # the host's namespace, kept open
    routes: list[tuple[socket.socket, list[int], str]] = []
    for text in args.forward:  # listen here, on the host
        listen, targets = _route(text)
        routes.append((_listen(listen), targets, args.netns))
    setns(args.netns)
    for text in args.reverse:  # listen inside the namespace
        listen, targets = _route(text)
        routes.append((_listen(listen), targets, own))
    setns(own)
    for listener, targets, namespace in routes:
        threading.Thread(target=_serve, args=(listener, targets, namespace), daemon=True).start()
    print(f"relay: {len(args.forward)} forward and {len(args.reverse)} reverse routes listening", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
