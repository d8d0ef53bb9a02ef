"""The server under abuse, as a real process on loopback: slow headers, idle half-sent bodies,
a flood of 500 connections, oversized shapes, clients that go away. Each test is bounded by the
short deadlines its server is configured with (seconds, not the defaults' tens of seconds)."""

import json
import socket
import statistics
import threading
import time

import numpy as np
import pytest
from conftest import RunningServer, make_big_answer_model, make_model

HEADER_TIMEOUT, BODY_TIMEOUT = 1.5, 2.5
SLACK = 1.0  # scheduling on a busy two-core machine
LIMITS = (f"header_timeout: {HEADER_TIMEOUT}\nbody_timeout: {BODY_TIMEOUT}\n"
          "keep_alive_timeout: 2\nlimit_concurrency: 256\nmax_request_bytes: 4194304\n")
# The flood's memory bound: the server's peak RSS may grow by this much over its idle size while
# 500 connections hold headers and bodies, a third of them 1 MiB each (bodies held at once are
# capped at 4 x max_request_bytes = 16 MiB; without the limits it grew by the whole 167 MiB).
FLOOD_GROWTH_MIB = 48
INFER = "/v2/models/scale/infer"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("abuse") / "store"
    for name, make in (("scale", make_model), ("big", make_big_answer_model)):
        make(root / name / "versions" / ("a" * 64))
        (root / name / "current").symlink_to("versions/" + "a" * 64)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, store):
    srv = RunningServer(tmp_path_factory.mktemp("abuse-server"), store, LIMITS,
                        models=("scale", "big"))
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path, store):
    """A server of its own, for tests that count log lines."""
    srv = RunningServer(tmp_path, store, LIMITS, models=("scale", "big"))
    yield srv
    srv.stop()


def infer_body(rows=1):
    return json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32",
                                   "data": [[1.0, 2.0, 3.0, 4.0]] * rows}]}).encode()


def read_until_closed(sock, deadline):
    """Everything the server sends until it closes; None if it is still open at deadline."""
    data = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_slow_headers_are_cut_off_at_the_header_deadline(server):
    sock = server.connect()
    started = time.monotonic()
    request = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60
    answer, sent = b"", 0
    sock.settimeout(1.0)
    while time.monotonic() - started < HEADER_TIMEOUT + SLACK + 1 and sent < len(request):
        try:
            sock.sendall(request[sent:sent + 1])  # one header byte a second
            sent += 1
            answer = sock.recv(4096)
            if answer == b"":
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if answer:
            break
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + SLACK, elapsed
    assert sent <= HEADER_TIMEOUT + SLACK + 1
    sock.close()


def test_a_connection_that_sends_nothing_is_closed(server):
    with server.connect() as sock:
        started = time.monotonic()
        answer = read_until_closed(sock, started + HEADER_TIMEOUT + SLACK)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer


def test_headers_over_the_cap_are_refused(server):
    with server.connect() as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nX-Big: " + b"a" * (80 << 10))
        answer = read_until_closed(sock, time.monotonic() + 5)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_the_next_request_on_a_kept_alive_connection_has_a_header_deadline_too(server):
    with server.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"live":true}'):
            first += sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost")  # and no more
        started = time.monotonic()
        answer = read_until_closed(sock, started + HEADER_TIMEOUT + SLACK)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started >= HEADER_TIMEOUT - 0.1


def test_a_body_still_dribbling_after_its_answer_is_cut_off(server):
    """The app answers 404 without reading the body; the client keeps sending it slowly."""
    with server.connect() as sock:
        sock.sendall(b"POST /v2/models/nope/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < BODY_TIMEOUT + SLACK:
            try:
                sock.sendall(b" ")
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 404") and b"408" not in answer, answer
    assert BODY_TIMEOUT - 0.1 <= elapsed <= BODY_TIMEOUT + SLACK, elapsed


def test_a_client_that_stops_reading_its_answer_is_cut_off(server):
    rows = 512  # an 8 MiB answer: more than the socket buffers hold
    header = json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": rows * 16}}],
                         "parameters": {"binary_data_output": True}}).encode()
    payload = header + np.ones((rows, 4), np.float32).tobytes()
    with server.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall((f"POST /v2/models/big/infer HTTP/1.1\r\nHost: x\r\n"
                      f"Inference-Header-Content-Length: {len(header)}\r\n"
                      f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
        started = time.monotonic()  # and read nothing more
        assert wait_for_line(server, "did not read its answer", BODY_TIMEOUT + SLACK), \
            server.lines()[-5:]
        elapsed = time.monotonic() - started
        received = 0
        sock.settimeout(5)
        with pytest.raises(ConnectionResetError):  # reset: the rest of the answer is dropped
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
    assert BODY_TIMEOUT - 0.1 <= elapsed <= BODY_TIMEOUT + SLACK, elapsed
    assert received < 8 << 20, received


def test_idle_half_sent_bodies_are_closed_at_the_body_deadline(server):
    body = infer_body(50)
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) + 4096}\r\n\r\n").encode()
    peak_before = server.memory()[1]
    socks = []
    for _index in range(200):
        sock = server.connect()
        sock.sendall(head + body[:len(body) // 2])  # half of it, then nothing
        socks.append(sock)
    started = time.monotonic()
    peak_during = server.memory()[1]
    answers = [read_until_closed(s, started + BODY_TIMEOUT + SLACK) for s in socks]
    for sock in socks:
        sock.close()
    open_still = sum(a is None for a in answers)
    assert open_still == 0, f"{open_still} of 200 connections still open after the deadline"
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:12] for a in answers}
    assert peak_during - peak_before < 32, (peak_before, peak_during)
    assert server.get("/v2/health/ready")[0] == 200


def test_a_flood_of_500_connections(server, record_property):
    """500 connections holding slow headers, half-sent bodies or nothing, with inference going
    on: health probes (each on a new connection, as systemd or a balancer sends them) keep
    answering within 100 ms at p99, excess requests get 503 at once, everything the flood holds
    is closed by the deadlines, memory stays bounded and nothing is logged as a traceback."""
    rss_before, peak_before = server.memory()
    latencies, probe_failures, stop = [], [], threading.Event()
    outcomes = {}

    def probe():
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = server.get("/v2/health/ready", timeout=2)[0]
            except OSError as exc:
                status = repr(exc)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                probe_failures.append(status)
            time.sleep(0.01)

    def work():
        while not stop.is_set():
            try:
                status = server.post(INFER, infer_body(), {"Content-Type": "application/json"})[0]
            except OSError as exc:
                status = type(exc).__name__
            outcomes[status] = outcomes.get(status, 0) + 1
            time.sleep(0.005)

    threads = [threading.Thread(target=probe), threading.Thread(target=work)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    half = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {2 << 20}\r\n\r\n"
            .encode() + b"[" * (1 << 20))  # 1 MiB of a 2 MiB body, then nothing
    slow = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()
    flood = []
    for i in range(500):
        sock = server.connect()
        sock.settimeout(2)
        kind = ("idle", "slow", "half")[i % 3]
        try:
            sock.sendall(slow if kind == "slow" else half if kind == "half" else b"")
        except OSError:  # refused at once (503) while sending
            pass
        flood.append((kind, sock))
    opened = time.monotonic()
    peak_during = server.memory()[1]
    # Keep dribbling header bytes until the server cuts the slow ones off.
    closed = {}
    while len(closed) < len(flood) and time.monotonic() < opened + BODY_TIMEOUT + SLACK + 1:
        for i, (kind, sock) in enumerate(flood):
            if i in closed:
                continue
            try:
                if kind == "slow":
                    sock.sendall(b"a")
                sock.settimeout(0)
                if sock.recv(65536, socket.MSG_PEEK) is not None:
                    closed[i] = time.monotonic() - opened
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                closed[i] = time.monotonic() - opened
        peak_during = max(peak_during, server.memory()[1])
        time.sleep(0.1)
    time.sleep(0.5)  # probes after the flood
    stop.set()
    for thread in threads:
        thread.join(10)
    for _kind, sock in flood:
        sock.close()
    rss_after, peak_after = server.memory()
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    record_property("health_p99_ms", round(p99, 2))
    record_property("health_probes", len(latencies))
    record_property("rss_mib", f"before {rss_before:.0f}, peak {peak_after:.0f}, after {rss_after:.0f}")
    print(f"\nflood: {len(latencies)} probes, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
          f"RSS before {rss_before:.1f} MiB (peak so far {peak_before:.1f}), peak during "
          f"{peak_after:.1f}, after {rss_after:.1f}; inference outcomes {outcomes}; "
          f"closed by the server: {len(closed)} of 500, last after {max(closed.values(), default=0):.2f} s")
    assert not probe_failures, probe_failures[:5]
    assert len(latencies) > 100
    assert p99 < 100, f"health probe p99 {p99:.1f} ms"
    assert len(closed) == 500, f"{500 - len(closed)} flood connections still open"
    assert max(closed.values()) <= BODY_TIMEOUT + SLACK
    assert outcomes.get(503), outcomes  # over the limit: refused at once, not queued
    assert set(outcomes) <= {200, 503}, outcomes
    assert peak_after - peak_before < FLOOD_GROWTH_MIB, (peak_before, peak_during, peak_after)
    log = server.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
    metrics = server.get("/metrics")[1].decode()
    for kind in ("header_timeout", "body_timeout", "busy"):
        assert f'edgeml_server_events_total{{kind="{kind}"}}' in metrics, kind
    # A flood is a few log lines per kind, not a line per connection.
    assert len(server.lines()) < 60, len(server.lines())


def test_oversized_declared_shapes_are_refused_before_allocating(server):
    for shape, extra in (([1 << 40, 4], {"data": [1, 2, 3, 4]}),
                         ([1 << 30, 4], {"parameters": {"binary_data_size": 16}}),
                         ([2 ** 62, 4], {"data": []})):
        body = json.dumps({"inputs": [dict({"name": "x", "shape": shape, "datatype": "FP32"},
                                           **extra)]}).encode()
        started = time.monotonic()
        status, answer = server.post(INFER, body, {"Content-Type": "application/json"})
        assert status == 400, answer
        assert "over the limit of" in json.loads(answer)["error"]
        assert time.monotonic() - started < 1
    assert server.memory()[1] < 400


def send_and_vanish(srv, request):
    """Send request and close at once, without reading (RST if anything is unread)."""
    sock = srv.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.sendall(request)
    sock.close()


def wait_for_line(srv, fragment, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in srv.lines() if fragment in line]
        if lines:
            return lines
        time.sleep(0.05)
    return []


def test_disconnect_mid_request_is_one_line_without_traceback(fresh_server):
    body = infer_body(100)
    send_and_vanish(fresh_server, (f"POST {INFER} HTTP/1.1\r\nHost: x\r\n"
                                   f"Content-Length: {len(body)}\r\n\r\n").encode()
                    + body[:len(body) // 2])
    lines = wait_for_line(fresh_server, "went away")
    time.sleep(0.3)
    assert len(wait_for_line(fresh_server, "went away")) == 1, fresh_server.lines()
    assert "while sending its request" in lines[0]
    assert "Traceback" not in fresh_server.log.read_text()
    metrics = fresh_server.get("/metrics")[1].decode()
    assert 'code="500"' not in metrics and 'code="499"} 1' in metrics


def test_disconnect_mid_answer_is_one_line_without_traceback(fresh_server):
    """An 8 MiB answer (model 'big' tiles its input 1024 times) is more than the loopback
    buffers take while nobody reads, so the server is still sending when the client goes."""
    rows = 512
    header = json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": rows * 16}}],
                         "parameters": {"binary_data_output": True}}).encode()
    payload = header + np.ones((rows, 4), np.float32).tobytes()
    sock = fresh_server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall((f"POST /v2/models/big/infer HTTP/1.1\r\nHost: x\r\n"
                  f"Inference-Header-Content-Length: {len(header)}\r\n"
                  f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
    assert sock.recv(64).startswith(b"HTTP/1.1 200")  # the answer has started
    time.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    lines = wait_for_line(fresh_server, "went away")
    time.sleep(0.3)
    assert len(wait_for_line(fresh_server, "went away")) == 1, fresh_server.lines()
    assert "of its answer" in lines[0], lines
    assert "Traceback" not in fresh_server.log.read_text()
    assert fresh_server.get("/v2/health/ready")[0] == 200


def test_request_bodies_held_at_once_are_capped(tmp_path, store):
    """max_buffered_bytes: a body that would take the bytes held by all requests over it is
    refused with 503 at once; what a request held is given back when it ends."""
    srv = RunningServer(tmp_path, store, LIMITS.replace("max_request_bytes: 4194304\n", "")
                        + "max_request_bytes: 1048576\nmax_buffered_bytes: 1048576\n")
    try:
        holder = srv.connect()
        holder.sendall((f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 20}\r\n\r\n"
                        ).encode() + b" " * (900 << 10))
        time.sleep(0.3)
        started = time.monotonic()
        status, answer = srv.post(INFER, b" " * (500 << 10), {"Content-Type": "application/json"})
        assert status == 503 and "max_buffered_bytes" in json.loads(answer)["error"], answer
        assert time.monotonic() - started < 1
        holder.close()
        time.sleep(0.3)
        assert srv.post(INFER, infer_body(), {"Content-Type": "application/json"})[0] == 200
        assert "Traceback" not in srv.log.read_text()
    finally:
        srv.stop()


# --- review of the limits: pipelining, trailer fields, requests that are not HTTP ----------------

def test_requests_pipelined_far_ahead_of_their_answers_are_cut_off(server):
    """uvicorn queued every pipelined request it parsed and read on after each answer: 256 KiB
    of pipelined GETs on each of 20 connections took the server from 75 to 494 MB and a health
    probe waited 5 s. Over MAX_PIPELINED ahead, the connection is reset."""
    peak_before = server.memory()[1]
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = []
    for _index in range(20):
        sock = server.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.sendall(request * ((256 << 10) // len(request)))
        except OSError:  # reset while sending: what is wanted
            pass
        socks.append(sock)
    started = time.perf_counter()
    assert server.get("/v2/health/ready", timeout=5)[0] == 200
    assert time.perf_counter() - started < 0.5
    for sock in socks:
        assert read_until_closed(sock, time.monotonic() + SLACK) is not None  # closed, not held
        sock.close()
    assert server.memory()[1] - peak_before < 16, (peak_before, server.memory())
    # A client pipelining a few requests gets every answer.
    with server.connect() as sock:
        sock.sendall(request * 8)
        answers = b""
        while answers.count(b'{"live":true}') < 8:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk


def test_trailer_fields_of_a_chunked_body_are_capped(server):
    """uvicorn kept a chunked body's trailer fields as request headers, without limit: 1 GB of
    them in 2 s was held by the server. They count against max_header_bytes (64 KiB): 431."""
    peak_before = server.memory()[1]
    line = b"X-Trailer: " + b"a" * 1000 + b"\r\n"
    with server.connect() as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n0\r\n".encode())
        sent, started = 0, time.monotonic()
        try:
            while time.monotonic() - started < 2 and sent < 64 << 20:
                sock.sendall(line * 256)
                sent += len(line) * 256
        except OSError:
            pass
        answer = read_until_closed(sock, time.monotonic() + SLACK)
    assert answer is not None, "still open"
    assert sent < 16 << 20, sent
    assert server.memory()[1] - peak_before < 16, (peak_before, server.memory())


def test_requests_that_are_not_http_or_ask_for_an_upgrade_are_not_a_log_line_each(fresh_server):
    """uvicorn logged "Invalid HTTP request received." for each, and two lines for each upgrade
    request: 200 connections, 200 or 400 lines. Now counted events, rate-limited."""
    for _index in range(100):
        with fresh_server.connect() as sock:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            assert read_until_closed(sock, time.monotonic() + 5).startswith(b"HTTP/1.1 400")
    for _index in range(100):
        with fresh_server.connect() as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # answered as plain HTTP
    lines = fresh_server.lines()
    assert len(lines) < 5, lines
    assert "Traceback" not in fresh_server.log.read_text()
    metrics = fresh_server.get("/metrics")[1].decode()
    assert 'edgeml_server_events_total{kind="bad_request"} 100' in metrics
