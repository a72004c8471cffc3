"""Several server processes on one port, for ``digitlab serve --workers N``.

Each process listens on a socket of its own bound to the same port (SO_REUSEPORT), so the
kernel spreads connections over them; the parent only watches them and replaces one that dies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing import connection as mp_connection

__all__ = ["check_free", "listening_socket", "run_processes"]


def run_processes(make_app: Callable[[dict], object], settings: dict, host: str, port: int,
                  workers: int, started: Callable[[], None] = lambda: None) -> None:
    """Serve ``make_app(settings)`` from ``workers`` processes, each listening on its own
    socket bound to the same port (SO_REUSEPORT), so the kernel spreads the connections over
    them. (uvicorn's own ``--workers`` share one socket: the first process to wake accepts
    every waiting connection, and keep-alive clients then all talk to one worker while the
    others idle; measured here.) A worker that dies is replaced; one that cannot start stops
    the whole service. ``make_app`` must be importable by name (the workers are spawned);
    the caller checks first that the port is free (:func:`check_free`: SO_REUSEPORT would
    otherwise share it with another server), and ``started`` is called as they start."""
    started()
    context = mp.get_context("spawn")
    failed = context.Event()

    def start() -> mp.process.BaseProcess:
        ready = context.Event()
        process = context.Process(target=_worker, args=(make_app, settings, host, port, ready,
                                                        failed), daemon=False)
        process.start()
        process.ready = ready
        return process

    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    try:
        while not stopping and not failed.is_set():
            ended = mp_connection.wait([p.sentinel for p in procs], timeout=0.5)
            for i, p in enumerate(procs):
                if p.sentinel in ended and not stopping:
                    p.join()
                    if not p.ready.is_set():
                        failed.set()  # it never came up: the next one would not either
                    else:
                        procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # uvicorn shuts down cleanly on SIGTERM
        for p in procs:
            p.join(timeout=15)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed.is_set() and not stopping:
        raise RuntimeError("a server process failed to start (see its message above)")


def check_free(host: str, port: int) -> None:
    """Raise OSError (with the reason in ``strerror``) unless ``host:port`` can be listened
    on now: a port in use, a host name that does not resolve, an address not of this
    machine."""
    with socket.socket(_family(host, port), socket.SOCK_STREAM) as sock:
        if os.name != "nt":  # as the servers bind (on Windows it would share a used port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def _family(host: str, port: int) -> int:
    """The address family ``host`` resolves to (a name may resolve to IPv6 only)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                              flags=socket.AI_PASSIVE)[0][0]


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` that other processes of this service may
    share (SO_REUSEPORT: the kernel spreads new connections over them)."""
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # that say they are TCP; with Nagle on, each response's body waited for the client's
    # delayed ACK: 40 ms added to every request on a kept-alive connection (measured)
    sock = socket.socket(_family(host, port), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(make_app, settings: dict, host: str, port: int, ready, failed) -> None:
    import uvicorn
    try:
        sock = listening_socket(host, port)
        app = make_app(settings)
    except Exception as exc:
        print(f"digitlab serve: error: {exc}", file=sys.stderr)
        failed.set()
        return
    ready.set()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
