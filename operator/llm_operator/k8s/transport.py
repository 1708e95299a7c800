"""HTTP/1.1 to the API server on plain sockets: one kept-alive connection per thread.

The `kubernetes` client still loads the configuration (kubeconfig, in-cluster ServiceAccount, exec
plugins, token refresh); this module only sends requests with it. On the 2-core machine of
docs/performance.md a request cost 0.65-1.1 ms of CPU through the client's REST layer (urllib3)
and 0.26 ms through http.client, whose header parsing (the email package) and per-response file
objects were still a third of the operator's CPU at 1,000 resources. Here a connection keeps one
buffered reader for all its responses, and a response is parsed with a few byte operations.

Assumptions: the API server speaks HTTP/1.1 with keep-alive and answers with a Content-Length or a
chunked body (every Kubernetes API server does); a proxy, when the configuration names one for the
API server, is an http:// proxy that tunnels with CONNECT.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import should_bypass_proxies
from pydantic_core import from_json, to_json

# JSON to and from the API server goes through pydantic-core (Rust): parsing is 1.8x as fast as
# `json.loads` on Deployments and pods, encoding 4x as fast as `json.dumps` on a Deployment. Parsing
# watch events alone was a fifth of the operator's CPU at 1,000 resources.
decode, encode = from_json, to_json

# Credentials are read from the configuration at most this often: its refresh hook (a rotated
# ServiceAccount token, an exec plugin's new token) then runs every 10 s instead of on every request.
AUTH_REFRESH_SECONDS = 10.0

MAX_LINE = 65536  # of a status line, a header or a chunk-size line

# A kept connection idle longer than this is closed, not reused: one that a load balancer or a
# half-dead peer stopped answering without closing looks idle and open, and a request on it would
# hang until its read timeout (90 s for a write). client-go's HTTP/2 transport guards against the
# same with a ping after 30 s of silence; a new TLS connection now and then costs far less.
MAX_IDLE_SECONDS = 15.0


class ProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 as this module reads it, or ended early."""


class _Connection:
    """A socket and the one buffered reader of everything it receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=MAX_LINE)
        self.idle_since = time.monotonic()

    def line(self) -> bytes:
        line = self.reader.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise ProtocolError("The API server closed the connection or sent an overlong line")
        return line

    def exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) < size:
            raise ProtocolError("The API server closed the connection before the end of a response")
        return data

    def idle_and_open(self) -> bool:
        """Whether a kept connection can carry the next request: a server that closed it (or wrote
        to it unasked) makes it readable while idle."""
        if time.monotonic() - self.idle_since > MAX_IDLE_SECONDS:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        return not select.select([self.sock], [], [], 0)[0]

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Response:
    """A response whose body is read when asked for: `data` all at once, `lines()` one line at a
    time as it arrives (a WATCH). Its connection is kept for the next request once the body has
    been read to its end; `close()` abandons the rest and the connection with it."""

    def __init__(self, connection: _Connection, status: int, reason: str, headers: dict[str, str],
                 no_body: bool, done: Callable[..., None]) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self._connection, self._done = connection, done
        self._data: bytes | None = None
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._length = None if no_body else int(headers["content-length"]) if "content-length" in headers else None
        self._no_body = no_body
        self._finished = False

    def _chunks(self) -> Iterator[bytes]:
        """The body, piece by piece, as the server sent it."""
        connection = self._connection
        if self._no_body:
            pass
        elif self._chunked:
            while size := int(connection.line().split(b";", 1)[0], 16):
                yield connection.exactly(size)
                connection.exactly(2)  # the CRLF after each chunk
            while connection.line() not in (b"\r\n", b"\n"):  # trailers
                pass
        elif self._length is not None:
            if self._length:
                yield connection.exactly(self._length)
        else:  # neither: the body ends when the server closes the connection
            yield connection.reader.read()
            self._finish(reuse=False)
            return
        self._finish(reuse=True)

    def _finish(self, reuse: bool) -> None:
        if not self._finished:
            self._finished = True
            self._done(reuse=reuse)

    @property
    def data(self) -> bytes:
        if self._data is None:
            try:
                self._data = b"".join(self._chunks())
            except BaseException:
                self._finish(reuse=False)
                raise
        return self._data

    def json(self) -> Any:
        return decode(self.data)

    def lines(self) -> Iterator[bytes]:
        """The body's lines, without their line ends, each as soon as it has arrived whole (the API
        server sends one watch event per chunk)."""
        pending = b""
        try:
            for chunk in self._chunks():
                *complete, pending = (pending + chunk).split(b"\n")
                yield from complete
        except BaseException:
            self._finish(reuse=False)
            raise
        if pending:
            yield pending

    def close(self) -> None:
        self._finish(reuse=False)


def _tls_context(configuration: Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert, cadata=configuration.ca_cert_data)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def _proxy(configuration: Configuration) -> tuple[str, int] | None:
    if not configuration.proxy or should_bypass_proxies(configuration.host, configuration.no_proxy or ""):
        return None
    proxy = urlsplit(configuration.proxy)
    if proxy.scheme != "http" or not proxy.hostname:
        raise ValueError(f"Proxy {configuration.proxy} for the API server: only http:// proxies are supported; "
                         "add the API server's address to NO_PROXY to reach it directly")
    return proxy.hostname, proxy.port or 80


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_head(connection: _Connection) -> tuple[int, str, dict[str, str]]:
    """Status line and headers (names lower-cased)."""
    version, _, rest = connection.line().decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise ProtocolError(f"Not an HTTP response from the API server: {version} {rest}"[:200])
    headers: dict[str, str] = {}
    while (line := connection.line()) not in (b"\r\n", b"\n"):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
        headers["connection"] = "close"
    return int(code), reason, headers


class Transport:
    def __init__(self, configuration: Configuration) -> None:
        url = urlsplit(configuration.host)
        self._configuration = configuration
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "localhost", url.port or (443 if self._https else 80)
        self._host_header = _authority(self._host, self._port)
        self._prefix = url.path.rstrip("/")  # an API server behind a path (e.g. a Rancher proxy)
        self._context = _tls_context(configuration) if self._https else None
        self._server_name = configuration.tls_server_name or self._host
        self._proxy = _proxy(configuration)
        self._idle = threading.local()
        self._auth: tuple[float, dict[str, str]] = (0.0, {})

    def _credentials(self) -> dict[str, str]:
        expires, headers = self._auth
        if time.monotonic() >= expires:
            settings = cast(dict[str, dict[str, Any]], self._configuration.auth_settings())
            headers = {setting["key"]: setting["value"] for setting in settings.values()
                       if setting["in"] == "header" and setting["value"]}
            self._auth = (time.monotonic() + AUTH_REFRESH_SECONDS, headers)
        return headers

    def _connect(self, connect_timeout: float) -> _Connection:
        """TCP (through the proxy's CONNECT tunnel when there is one), then TLS naming the server as
        the configuration says (`tls-server-name`), which may differ from the address dialled."""
        sock = socket.create_connection(self._proxy or (self._host, self._port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._proxy:
                self._tunnel(sock)
            if self._context:
                sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _tunnel(self, sock: socket.socket) -> None:
        lines = [f"CONNECT {self._host_header} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in (self._configuration.proxy_headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the head may be consumed
            byte = sock.recv(1)
            if not byte or len(head) > MAX_LINE:
                raise ProtocolError("The proxy closed the connection during CONNECT")
            head += byte
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if status.split(" ")[1:2] != ["200"]:
            raise ProtocolError(f"The proxy refused to tunnel to the API server: {status}")

    def _take(self, connect_timeout: float) -> _Connection:
        """This thread's idle connection, or a new one. While a response is being read, its
        connection is nobody's: a second request from the same thread gets a connection of its own."""
        connection, self._idle.connection = getattr(self._idle, "connection", None), None
        if connection is not None and not connection.idle_and_open():
            connection.close()
            connection = None
        return connection or self._connect(connect_timeout)

    def _give_back(self, connection: _Connection, reusable: bool) -> None:
        if not reusable or getattr(self._idle, "connection", None) is not None:
            connection.close()
        else:
            connection.idle_since = time.monotonic()
            self._idle.connection = connection

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json", timeout: tuple[float, float] = (10, 90)) -> Response:
        """Send one request; `body` is encoded to JSON. Returns the response with its body unread;
        raises ApiException for any status but 2xx, with the API server's message in `body`."""
        connect_timeout, read_timeout = timeout
        target = self._prefix + path + ("?" + urlencode(query) if query else "")
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}", "Accept: application/json",
                "User-Agent: llm-operator"]
        head += [f"{name}: {value}" for name, value in self._credentials().items()]
        payload = b""
        if body is not None:
            payload = encode(body)
            head.append(f"Content-Type: {content_type}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(payload)}")
        connection = self._take(connect_timeout)
        try:
            connection.sock.settimeout(read_timeout)
            connection.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            status, reason, headers = _read_head(connection)
        except BaseException:
            connection.close()
            raise
        reusable = "close" not in headers.get("connection", "").lower()
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        response = Response(connection, status, reason, headers, no_body,
                            lambda reuse: self._give_back(connection, reuse and reusable))
        if not 200 <= status <= 299:
            raise ApiException(status=status, reason=reason, body=response.data.decode("utf-8", "replace"))
        return response
