"""k8s/transport.py against a real HTTP/1.1 server on loopback: kept connections, a connection
the server dropped while idle, errors, streamed WATCH lines and credentials."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException

from llm_operator.k8s import transport
from llm_operator.k8s.transport import Transport


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked responses

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.server.connections += 1

    def reply(self, status, body, close=False):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if close:  # as an idle timeout would: no "Connection: close" announced
            self.wfile.flush()
            self.close_connection = True

    def do_GET(self):
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        if self.path.startswith("/missing"):
            self.reply(404, {"kind": "Status", "message": "deployments.apps \"x\" not found"})
        elif "watch=true" in self.path:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = b"".join(json.dumps({"type": "ADDED", "object": {"n": i}}).encode() + b"\n" for i in range(3))
            for part in (events[:10], events[10:50], events[50:]):  # lines split across chunks
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.reply(200, {"path": self.path}, close=self.path.startswith("/drop"))

    def do_PATCH(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        self.reply(200, json.loads(body))


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.connections, httpd.seen = 0, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def configured(server, **settings) -> Configuration:
    configuration = Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    for key, value in settings.items():
        setattr(configuration, key, value)
    return configuration


def test_requests_of_one_thread_share_one_kept_connection(server):
    kube = Transport(configured(server))
    answers = [json.loads(kube.request("GET", "/apis/x", {"labelSelector": "a=b,c"}).data) for _ in range(3)]
    applied = json.loads(kube.request("PATCH", "/apis/x/y", body={"spec": {"é": 1}},
                                      content_type="application/apply-patch+yaml").data)
    assert answers[0] == {"path": "/apis/x?labelSelector=a%3Db%2Cc"}
    assert applied == {"spec": {"é": 1}}
    assert server.seen[-1][2]["Content-Type"] == "application/apply-patch+yaml"
    assert server.connections == 1


def read(kube: Transport, path: str) -> bytes:
    """A GET whose body is read to its end, which is what frees its connection for the next request."""
    return kube.request("GET", path).data


def test_a_connection_the_server_dropped_while_idle_is_replaced_not_failed(server):
    kube = Transport(configured(server))
    read(kube, "/drop")  # the server closes the connection after answering
    time.sleep(0.2)
    assert json.loads(kube.request("GET", "/next").data) == {"path": "/next"}
    assert server.connections == 2


def test_a_connection_idle_too_long_is_not_reused(server, monkeypatch):
    """One a proxy stalled without closing would look open: a request on it would hang."""
    import llm_operator.k8s.transport as transport
    kube = Transport(configured(server))
    read(kube, "/first")
    read(kube, "/soon")
    monkeypatch.setattr(transport, "MAX_IDLE_SECONDS", 0.1)
    time.sleep(0.2)
    read(kube, "/late")
    assert server.connections == 2


def test_an_error_carries_the_api_servers_message_and_keeps_the_connection(server):
    kube = Transport(configured(server))
    with pytest.raises(ApiException) as raised:
        kube.request("GET", "/missing")
    assert raised.value.status == 404
    assert json.loads(raised.value.body)["message"] == 'deployments.apps "x" not found'
    read(kube, "/after")
    assert server.connections == 1


def test_a_watch_streams_whole_lines_and_an_abandoned_one_is_not_reused(server):
    kube = Transport(configured(server))
    lines = list(kube.request("GET", "/api/v1/pods", {"watch": "true"}).lines())
    assert [json.loads(line)["object"]["n"] for line in lines] == [0, 1, 2]
    read(kube, "/after")
    assert server.connections == 1  # a watch read to its end leaves its connection for reuse
    stream = kube.request("GET", "/api/v1/pods", {"watch": "true"})
    next(stream.lines())
    stream.close()
    read(kube, "/after")
    assert server.connections == 2


def test_credentials_come_from_the_configuration_and_refresh_now_and_then(server, monkeypatch):
    refreshes = []

    def refresh(configuration):
        refreshes.append(1)
        configuration.api_key["BearerToken"] = f"token-{len(refreshes)}"

    kube = Transport(configured(server, api_key={"BearerToken": "token-0"}, api_key_prefix={"BearerToken": "Bearer"},
                                refresh_api_key_hook=refresh))
    for _ in range(5):
        read(kube, "/x")
    assert len(refreshes) == 1 and server.seen[-1][2]["authorization"] == "Bearer token-1"
    monkeypatch.setattr(transport, "AUTH_REFRESH_SECONDS", 0.0)
    kube._auth = (0.0, {})  # expired
    read(kube, "/x")
    assert server.seen[-1][2]["authorization"] == "Bearer token-2"


def test_a_proxy_other_than_http_is_refused_with_what_to_do(server):
    with pytest.raises(ValueError, match="NO_PROXY"):
        Transport(configured(server, proxy="socks5://127.0.0.1:1080"))


def serve_each_connection(handle):
    """A TCP server on loopback that calls `handle(client)` for each connection; returns
    (listener, port). Close the listener to stop it."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            handle(client)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.fixture
def connect_proxy():
    """A CONNECT proxy on loopback that records what it was asked and relays the bytes."""
    import socket

    asked = []

    def relay(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            target.close()

    def tunnel(client):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += client.recv(1)
        asked.append(head.decode())
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=relay, args=(client, upstream), daemon=True).start()
        threading.Thread(target=relay, args=(upstream, client), daemon=True).start()

    listener, port = serve_each_connection(tunnel)
    yield f"http://127.0.0.1:{port}", asked
    listener.close()


def test_requests_go_through_an_http_proxy_by_connect(server, connect_proxy):
    proxy_url, asked = connect_proxy
    kube = Transport(configured(server, proxy=proxy_url, proxy_headers={"Proxy-Authorization": "Basic eA=="}))
    assert json.loads(kube.request("GET", "/through").data) == {"path": "/through"}
    assert asked[0].startswith(f"CONNECT 127.0.0.1:{server.server_address[1]} HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic eA==" in asked[0]
    assert server.seen[-1][2]["Host"] == f"127.0.0.1:{server.server_address[1]}"


def test_a_body_that_ends_with_the_connection_is_read_whole_and_the_connection_not_reused():
    accepted = []

    def answer_and_close(client):
        accepted.append(client)
        client.recv(65536)
        client.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"old\": true}")
        client.close()

    listener, port = serve_each_connection(answer_and_close)
    kube = Transport(Configuration(host=f"http://127.0.0.1:{port}"))
    assert [kube.request("GET", "/a").json() for _ in range(2)] == [{"old": True}] * 2
    assert len(accepted) == 2
    listener.close()
