"""Real faults for the tests: a TCP proxy that can cut a server off, and loginetl as a process.

The proxy sits between loginetl and a real server (PostgreSQL or the SQS server). `cut()` drops
every open connection and refuses new ones, as a crashed or unreachable server does;
`restore()` listens again on the same port. With `delay`, every byte waits that long in each
direction, as over a network with a round trip of twice the delay (`python -m benchmarks --rtt`).
"""

from __future__ import annotations

import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, urlunsplit


def through(proxy: TcpProxy, url: str) -> str:
    """`url` with the proxy for its host and port."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def proxy_for(url: str, delay: float = 0.0) -> TcpProxy:
    """A proxy in front of the database at `url` (delaying each direction by `delay` s)."""
    parts = urlsplit(url)
    return TcpProxy(parts.hostname, parts.port or 5432, delay)


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay  # seconds, each direction
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            _close(
                listener
            )  # shutdown() wakes the thread blocked in accept(); close() alone does not
        with self.lock:
            connections, self.connections = self.connections, []
        for connection in connections:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.connections += [client, upstream]
            if self.delay:
                for pair in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._delay, args=pair, daemon=True).start()
            else:
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if source is a else a).sendall(data)
        except (OSError, ValueError):
            _close(a)
            _close(b)

    def _delay(self, source: socket.socket, destination: socket.socket) -> None:
        """Forward one direction, each chunk `delay` seconds after it arrived; a closed end
        closes both."""
        due: queue.Queue = queue.Queue()

        def send() -> None:
            while (item := due.get()) is not None:
                time.sleep(max(0.0, item[0] - time.monotonic()))
                try:
                    destination.sendall(item[1])
                except OSError:
                    break
            _close(source)
            _close(destination)

        threading.Thread(target=send, daemon=True).start()
        try:
            while data := source.recv(65536):
                due.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        due.put(None)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_loginetl(*args: str, env: dict) -> subprocess.Popen:
    """`loginetl ARGS` as its own process, as cron or a service manager would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "loginetl", *args],
        env=os.environ | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Watched:
    """`loginetl ARGS` as its own process, its stderr read as it comes, so a test can wait for
    what the process says (a retry, a signal taken) instead of sleeping."""

    def __init__(self, *args: str, env: dict) -> None:
        self.process = start_loginetl(*args, env=env)
        self.lines: list[str] = []  # stderr
        self.output: list[str] = []  # stdout
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.process.stderr, self.lines),
                (self.process.stdout, self.output),
            )
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def said(self, text: str) -> int:
        """How many lines so far contain `text`."""
        return sum(text in line for line in list(self.lines))

    def wait_for(self, text: str, times: int = 1, timeout: float = 60.0) -> None:
        wait_until(lambda: self.said(text) >= times or self.process.poll() is not None, timeout)
        assert self.said(text) >= times, "".join(self.lines)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        self.process.wait(timeout)
        for reader in self.readers:
            reader.join(timeout)
        return self.process.returncode, "".join(self.output), "".join(self.lines)


def wait_until(condition, timeout: float = 30.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(every)


class ThrottlingSqs:
    """An HTTP front for a real SQS server that answers the first `throttle` requests of every
    `every` with a throttling error (alternately 503 and RequestThrottled), and forwards the
    rest."""

    def __init__(self, target: str, throttle: int, every: int) -> None:
        self.target = target
        self.throttle, self.every = throttle, every
        self.requests = self.throttled = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forwarding(self, action: str, body: bytes) -> bytes:
        return body

    def forwarded(self, action: str) -> None:
        pass

    def answering(self, action: str, request: bytes, answer: bytes) -> bytes:
        """The server's answer to `request` (as the client sent it), as the client is to get
        it: here unchanged."""
        return answer

    def injected(self, action: str) -> tuple[int, bytes, str] | None:
        """The answer (status, body, content type) to give this request instead of forwarding
        it, or None to forward it: here a throttling error for the first `throttle` of every
        `every` requests, alternately 503 and RequestThrottled."""
        with self.lock:
            self.requests += 1
            throttle = (self.requests - 1) % self.every < self.throttle
            self.throttled += throttle
            odd = self.throttled % 2
        if not throttle:
            return None
        if odd:
            return 503, b"", "text/plain"
        error = b'{"__type": "RequestThrottled", "message": "Rate exceeded"}'
        return 400, error, "application/x-amz-json-1.0"

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sent = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                answer = proxy.injected(action)
                if answer is not None:
                    return self._reply(*answer)
                body = proxy.forwarding(action, sent)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, answer = response.status, response.read()
                        kind = response.headers.get("Content-Type", "")
                except urllib.error.HTTPError as error:
                    status, answer = error.code, error.read()
                    kind = error.headers.get("Content-Type", "")
                finally:
                    proxy.forwarded(action)
                self._reply(status, proxy.answering(action, sent, answer), kind)

            def _reply(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:
                pass

        return Handler


class RecordingSqs(ThrottlingSqs):
    """An HTTP front for a real SQS server that forwards every request, counts them by action
    (and the most ReceiveMessage calls in flight at once), and can rewrite a request's JSON
    body on its way (`rewrite(action, body) -> body`) to make the server refuse part of it, and
    the server's answer on its way back (`answer(action, request, answer) -> answer`, given the
    request as the client sent it)."""

    def __init__(self, target: str, rewrite=None, answer=None) -> None:
        self.rewrite = rewrite or (lambda action, body: body)
        self.answer = answer or (lambda action, request, answer: answer)
        self.actions: dict[str, int] = {}
        self.in_flight = self.most_in_flight = 0
        super().__init__(target, throttle=0, every=1)

    def injected(self, action: str) -> None:
        return None

    def forwarding(self, action: str, body: bytes) -> bytes:
        with self.lock:
            self.actions[action] = self.actions.get(action, 0) + 1
            if action == "ReceiveMessage":
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return self.rewrite(action, body)

    def answering(self, action: str, request: bytes, answer: bytes) -> bytes:
        return self.answer(action, request, answer)

    def forwarded(self, action: str) -> None:
        if action == "ReceiveMessage":
            with self.lock:
                self.in_flight -= 1
