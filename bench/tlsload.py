"""
A light XML-RPC load over TLS with a client certificate, for bench_am.py.

Each worker process sends one pre-built HTTP request (the XML-RPC call
encoded once) over raw sockets wrapped by the standard C{ssl} module and
reads the reply by its Content-Length, so the client costs far less than
the server it measures. Three ways to connect:

  - C{keep-alive}: one connection per worker, every call on it;
  - C{new}: a full TLS handshake for every call;
  - C{resume}: a new connection for every call, resuming the previous
    connection's TLS session (C{ssl.SSLSession} reuse), as a client that
    caches sessions does.

Workers start together at an agreed instant, run for a fixed time and
report how many calls they completed (and, when resuming, how many
handshakes resumed).
"""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

MODES = ("keep-alive", "new", "resume")


@dataclass(frozen=True)
class Target:
    """Where to call and as whom."""

    host: str
    port: int
    cert: str
    key: str
    cafile: str


def client_context(target: Target) -> ssl.SSLContext:
    """A client context presenting the certificate and trusting only the roots (GENI names no host)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=target.cafile)
    context.load_cert_chain(target.cert, target.key)
    return context


def build_request(target: Target, method: str, params: tuple[Any, ...], keep_alive: bool) -> bytes:
    """The whole HTTP request of one XML-RPC call, encoded once."""
    body = xmlrpc.client.dumps(params, method, allow_none=False).encode("utf-8")
    headers = (
        f"POST / HTTP/1.1\r\nHost: {target.host}:{target.port}\r\nUser-Agent: tlsload\r\n"
        f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return headers.encode("ascii") + body


def read_reply(sock: ssl.SSLSocket, pending: bytearray) -> bytes:
    """Read one HTTP reply (status 200, with Content-Length) and return its body."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-reply")
        pending += chunk
    head_end = pending.index(b"\r\n\r\n") + 4
    head = bytes(pending[:head_end])
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected reply {head[:80]!r}")
    length = -1
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length < 0:
        raise ConnectionError("a reply without Content-Length")
    while len(pending) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        pending += chunk
    body = bytes(pending[head_end : head_end + length])
    del pending[: head_end + length]
    return body


def call_once(target: Target, method: str, params: tuple[Any, ...]) -> Any:
    """One call on a new connection, fully decoded: to check the server and learn its answer."""
    context = client_context(target)
    with socket.create_connection((target.host, target.port)) as raw:
        with context.wrap_socket(raw) as sock:
            sock.sendall(build_request(target, method, params, keep_alive=False))
            body = read_reply(sock, bytearray())
    return xmlrpc.client.loads(body)[0][0]


def _connect(target: Target, context: ssl.SSLContext, session: ssl.SSLSession | None) -> ssl.SSLSocket:
    raw = socket.create_connection((target.host, target.port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(raw, session=session)


def _worker(target: Target, request: bytes, expect: int, mode: str, start_at: float, seconds: float, results: Any) -> None:
    context = client_context(target)
    calls = resumed = 0
    session: ssl.SSLSession | None = None
    sock: ssl.SSLSocket | None = None
    pending = bytearray()
    try:
        if mode == "keep-alive":
            sock = _connect(target, context, None)
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        while time.time() < deadline:
            if mode != "keep-alive":
                sock = _connect(target, context, session)
                resumed += bool(sock.session_reused)
            assert sock is not None
            sock.sendall(request)
            body = read_reply(sock, pending)
            if len(body) != expect:
                raise ConnectionError(f"a reply of {len(body)} bytes, expected {expect}")
            calls += 1
            if mode != "keep-alive":
                if mode == "resume":
                    session = sock.session
                sock.close()
                pending.clear()
        results.put((calls, resumed, None))
    except Exception as e:  # reported to the parent, which fails the run
        results.put((calls, resumed, f"{type(e).__name__}: {e}"))
    finally:
        if sock is not None:
            sock.close()


def run_load(
    target: Target,
    method: str,
    params: tuple[Any, ...],
    mode: str,
    processes: int,
    seconds: float,
) -> tuple[float, float]:
    """
    Run C{processes} workers for C{seconds}; return the calls per second
    and the share of handshakes that resumed a session.

    @raise RuntimeError: if a worker failed.
    """
    request = build_request(target, method, params, keep_alive=mode == "keep-alive")
    expect = _reply_size(target, request)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.3 + 0.05 * processes
    workers = [
        context.Process(target=_worker, args=(target, request, expect, mode, start_at, seconds, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    errors = [error for _, _, error in outcomes if error]
    if errors:
        raise RuntimeError(f"{len(errors)} load worker(s) failed: {errors[0]}")
    calls = sum(c for c, _, _ in outcomes)
    resumed = sum(r for _, r, _ in outcomes)
    return calls / seconds, (resumed / calls if calls else 0.0)


def _reply_size(target: Target, request: bytes) -> int:
    """The body size of the reply to C{request} (every reply in a run has this size)."""
    context = client_context(target)
    with _connect(target, context, None) as sock:
        sock.sendall(request)
        return len(read_reply(sock, bytearray()))
