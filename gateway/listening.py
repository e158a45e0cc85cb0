"""A listening socket per worker of `consortium serve --workers N`, so the kernel spreads
connections over the workers (docs/gateway.md, Performance).

uvicorn's supervisor binds one socket and hands the same one to every worker. Workers that
share one accept queue take connections as they happen to wake: a burst of new connections
(a client opening its pool) goes to whichever worker woke first, often all of them, and that
worker then does all their requests while the other idles. With a socket of its own per worker,
bound with SO_REUSEPORT like the MLLP listener, the kernel picks the worker of each new
connection by a hash of its addresses and ports, whoever is awake."""

from __future__ import annotations

import socket
from typing import Any


class WorkerSocket(socket.socket):
    """The supervisor's socket: bound, never listening (so no connection waits on it), it holds
    the port and says which one. uvicorn hands it to each worker it starts (the first ones and
    those replacing a dead worker); a worker unpickling it gets a listening socket of its own on
    the same address (`listening_socket`), not a copy of this one."""

    backlog = 2048  # uvicorn's default; the listening call takes the configured one

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return listening_socket, (self.family, host, port, self.backlog)


def _reusable(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def reserve(host: str, port: int, backlog: int) -> WorkerSocket:
    """The supervisor's socket for host:port (port 0: a free one, the same for every worker)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = WorkerSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.backlog = backlog
    _reusable(sock).bind((host, port))
    return sock


def listening_socket(family: int, host: str, port: int, backlog: int) -> socket.socket:
    """A worker's own socket on the supervisor's address (SO_REUSEPORT), bound but not yet
    listening: the server listens on it once the app has started (uvicorn's startup creates
    its server after the lifespan), so no connection waits for a worker still starting — or
    replacing a dead one — while the others could answer."""
    sock = _reusable(socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP))
    sock.bind((host, port))
    return sock
