"""The inference server (python -m edgeml_serve) in a process of its own, for tests and benchmarks
that need a real one: started on a configuration and waited for until it says it is ready."""

import http.client
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(config, port, timeout=30.0, **popen):
    """Popen of edgeml_serve on config, once GET /v2/health/ready on port answers 200.
    Raises RuntimeError (the process stopped) if it does not within timeout seconds."""
    proc = subprocess.Popen([sys.executable, "-m", "edgeml_serve", "--config", str(config)], **popen)  # pylint: disable=consider-using-with
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.terminate()
    proc.wait(10)
    raise RuntimeError(f"edgeml_serve on {config} was not ready on port {port} within {timeout} s")
