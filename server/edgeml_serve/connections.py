"""Connection limits uvicorn does not have, on its httptools protocol.

uvicorn bounds idle kept-alive connections (timeout_keep_alive) and, with limit_concurrency,
answers 503 once too many connections or requests are open. It has no deadline on a request's
headers or body and no cap on header bytes, so a client dribbling bytes holds a connection (and
what it sent) for as long as it likes. LimitedProtocol adds, per connection:

- a header deadline: the request line and headers must arrive within header_timeout, counted
  from the connection's start or the next request's first byte (408, closed);
- a cap on header bytes (431, closed) — httptools keeps whatever it is sent — and on a chunked
  body's trailer fields, which are counted the same way and never kept (uvicorn appends them to
  the request's headers: a client sent 1 GB of them in 2 s and the server held it all);
- a cap on requests sent ahead of their answers (pipelining): uvicorn queues every one it parses,
  and reads on after each answer (one connection took the server from 75 to 245 MB in 6 s);
  over MAX_PIPELINED the connection is reset;
- a request that is not HTTP, or asks for a protocol upgrade, is one counted event, not one or two
  log lines of uvicorn's per request;
- a body deadline: the whole body within body_timeout of the headers (408, closed);
- a write deadline: a client that stops reading its answer for body_timeout is cut off;
- health probes exempt from limit_concurrency, so a flood does not make the host look dead.

Each kind of event is counted for /metrics and logged as one line, at most one per kind every
LOG_INTERVAL seconds (then a count of the rest): a flood cannot flood the journal.
"""

import asyncio
import json
import logging
import socket
import struct
import time
import weakref

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LOG = logging.getLogger("edgeml_serve")
PROBE_PATHS = (b"/v2/health/live", b"/v2/health/ready")
# Set in a request's ASGI scope when the server itself cut the request off (the reason); the
# app then knows the disconnect it sees was logged already.
CLOSED_BY_SERVER = "edgeml.closed_by_server"
# In a request's ASGI scope: a function saying whether the client has gone, at no cost (the ASGI
# way, a receive() cancelled at once, costs tens of microseconds per request).
CLIENT_GONE = "edgeml.client_gone"
LOG_INTERVAL = 10.0
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection
MAX_PIPELINED = 16  # requests a connection may send ahead of their answers

EVENTS = {  # kind: how the summary line names several
    "header_timeout": "connections closed for headers not sent in time",
    "body_timeout": "connections closed for a request body not sent in time",
    "write_timeout": "connections closed for not reading their answer",
    "headers_too_large": "connections refused for headers over the limit",
    "bad_request": "connections closed for requests that are not valid HTTP",
    "pipelined": "connections reset for sending too many requests ahead of their answers",
    "busy": "requests refused at the concurrency limit",
    "client_gone": "requests whose client went away",
}


class Events:
    """Counts connection and request events for /metrics; logs each as one line, rate-limited."""

    def __init__(self, metrics, interval=LOG_INTERVAL):
        self.metrics = metrics
        self.interval = interval
        self._last = {}  # kind -> monotonic time of the last line
        self._held = {}  # kind -> events not logged since
        self._flush_at = {}  # kind -> a scheduled summary line

    def note(self, kind, message, level=logging.WARNING):
        """Count one event; log message (one line) unless a line of this kind went out lately."""
        self.metrics.event(kind)
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval) >= self.interval:
            self._last[kind] = now
            LOG.log(level, "%s", message)
            return
        self._held[kind] = self._held.get(kind, 0) + 1
        if kind not in self._flush_at:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on the event loop: the next event logs the count
                return
            self._flush_at[kind] = loop.call_later(self._last[kind] + self.interval - now,
                                                   self._flush, kind, level)

    def _flush(self, kind, level):
        self._flush_at.pop(kind, None)
        held = self._held.pop(kind, 0)
        if held:
            self._last[kind] = time.monotonic()
            LOG.log(level, "%d more %s in the last %.0f s (edgeml_server_events_total)", held,
                    EVENTS.get(kind, kind), self.interval)


class _Refused(Exception):
    """Raised in a parser callback to stop parsing what a connection sent: args are _cut_off's."""


def _plain(status, phrase, text):
    body = json.dumps({"error": text}).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and caps above (see protocol_class)."""

    current_config = None  # -> the server's Config now (a reload changes it), set by protocol_class
    events = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The limits as configured when the connection opened: a reload applies to new ones.
        self.settings = self.current_config()
        self.timeout_keep_alive = self.settings.keep_alive_timeout
        # uvicorn's own check would answer health probes 503 too: it is made here instead.
        self.limit = self.settings.limit_concurrency
        self.limit_concurrency = None
        self._timer = None  # the header or the body deadline, whichever applies now
        self._write_timer = None
        self._awaiting_headers = True
        self._header_bytes = 0
        self._trailer_bytes = 0

    # -- timers ----------------------------------------------------------------------------
    def _arm(self, seconds, callback):
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _who(self):
        return "%s:%d" % self.client[:2] if self.client else "a client"  # pylint: disable=consider-using-f-string

    def _answering(self):
        """Whether an answer is on its way out (then no other may be written)."""
        return self.cycle is not None and self.cycle.response_started \
            and not self.cycle.response_complete

    def _cut_off(self, kind, message, status=None, phrase=None):
        """Answer status (if given) and close; log message, once per kind and interval. Without
        a status, what is still buffered for the client is dropped (it is not reading)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.scope[CLOSED_BY_SERVER] = kind
            cycle.disconnected = True  # the app's receive() now says http.disconnect
            cycle.message_event.set()
        if status:
            self.transport.write(_plain(status, phrase, message))
            self.transport.close()  # once the answer is out
        else:  # reset, so the kernel drops what it still holds for the client too
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                except OSError:
                    pass
            self.transport.abort()
        self.events.note(kind, f"{self._who()}: {message}; connection closed")

    def _headers_late(self):
        self._timer = None
        if not self.transport.is_closing():
            self._cut_off("header_timeout",
                          f"request headers not complete within {self.settings.header_timeout:g} s",
                          *(() if self._answering() else (408, "Request Timeout")))

    def _body_late(self):
        self._timer = None
        if not self.transport.is_closing():  # 408 unless this request was answered already
            self._cut_off("body_timeout",
                          f"request body not complete within {self.settings.body_timeout:g} s",
                          *(() if self.cycle is not None and self.cycle.response_started
                            else (408, "Request Timeout")))

    def _write_late(self):
        self._write_timer = None
        if not self.transport.is_closing():
            self._cut_off("write_timeout",
                          f"did not read its answer for {self.settings.body_timeout:g} s")

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm(self.settings.header_timeout, self._headers_late)

    def connection_lost(self, exc):
        self._disarm()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    def data_received(self, data):
        # uvicorn's own, but its parser errors and upgrade requests are counted events here
        # (uvicorn logs a line or two for each), and a callback can stop parsing (_Refused).
        if self.transport.is_closing():
            return  # cut off: the rest is not parsed
        if self._awaiting_headers:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrade is served (ws="none"): the request is answered as plain HTTP
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _Refused):
                kind, message, status, phrase = cause.args
            else:
                kind, message, status, phrase = ("bad_request", "not a valid HTTP request",
                                                 400, "Bad Request")
            if not self.transport.is_closing():
                self._cut_off(kind, message, *(() if status is None or self._answering()
                                               else (status, phrase)))
            return
        if self._awaiting_headers and self._header_bytes > self.settings.max_header_bytes \
                and not self.transport.is_closing():
            self._cut_off("headers_too_large",
                          f"request line and headers over {self.settings.max_header_bytes} bytes",
                          *(() if self._answering() else (431, "Request Header Fields Too Large")))

    def pause_writing(self):
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.settings.body_timeout, self._write_late)

    def resume_writing(self):
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # -- httptools parser callbacks ------------------------------------------------------------
    def on_message_begin(self):
        super().on_message_begin()
        self._trailer_bytes = 0
        if self._timer is None:  # the next request on a kept-alive connection
            self._arm(self.settings.header_timeout, self._headers_late)

    def _is_probe(self):
        try:
            return httptools.parse_url(self.url).path in PROBE_PATHS
        except httptools.HttpParserError:
            return False

    def on_headers_complete(self):
        self._disarm()
        self._awaiting_headers = False
        self._header_bytes = 0
        app = self.app
        if self.limit is not None and (len(self.connections) >= self.limit
                                       or len(self.tasks) >= self.limit) and not self._is_probe():
            self.app = _busy_app(self.limit)
            self.events.note("busy", f"{self._who()}: refused with 503, {len(self.connections)} "
                                     f"connections and {len(self.tasks)} requests open "
                                     f"(limit_concurrency {self.limit})")
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        if len(self.pipeline) > MAX_PIPELINED:
            raise _Refused("pipelined", f"more than {MAX_PIPELINED} requests sent ahead of their "
                           "answers", None, None)
        cycle = weakref.ref(self.cycle) if self.cycle is not None else None
        if cycle is not None:
            self.scope[CLIENT_GONE] = lambda: getattr(cycle(), "disconnected", True)
        self._arm(self.settings.body_timeout, self._body_late)

    def on_header(self, name, value):
        if self._awaiting_headers:
            super().on_header(name, value)
            return
        # A chunked body's trailer fields: not used, so not kept; counted against the header cap.
        self._trailer_bytes += len(name) + len(value) + 4
        if self._trailer_bytes > self.settings.max_header_bytes:
            raise _Refused("headers_too_large", "trailer fields over "
                           f"{self.settings.max_header_bytes} bytes", 431,
                           "Request Header Fields Too Large")

    def on_message_complete(self):
        super().on_message_complete()
        self._disarm()
        self._awaiting_headers = True  # what comes next is the next request's headers
        self._header_bytes = 0


def _busy_app(limit):
    body = json.dumps({"error": f"the server is at its limit of {limit} connections or requests "
                                "at once; try again shortly"}).encode()

    async def busy(_scope, _receive, send):
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
    return busy


def protocol_class(current_config, events):
    """The protocol class for uvicorn.run(http=...): current_config() -> the server's Config."""
    return type("EdgemlHttpProtocol", (LimitedProtocol,),
                {"current_config": staticmethod(current_config), "events": events})
