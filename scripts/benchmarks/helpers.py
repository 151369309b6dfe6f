"""The helper processes (`python3 scripts/benchmarks serve-http …`: the measuring process never serves traffic
itself) and the client side of the wait loop that every measure shares. Standard library only."""
import argparse
import socket
import sys
import threading
import time

HELPERS = ("serve-http", "serve-source", "serve-echo", "wait-http", "wait-tcp")
POLL = 0.005  # the wait loop's interval, the same for fwd and every baseline


def serve(port, bind, handle, backlog=1024):
    """Accepts forever, each connection on a thread of its own; prints "ready" once it listens."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(backlog)

    def run(conn):
        try:
            handle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=run, args=(conn,), daemon=True).start()


HTTP_BODY = b"<h1>fwd bench</h1>\n"
HTTP_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % len(HTTP_BODY)) + HTTP_BODY


def http_reply(conn):
    """Reads a request head, answers one small page and closes: the target behind every forward."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.sendall(HTTP_REPLY)


def source(nbytes):
    """Sends `nbytes` to each client, then closes: the far end of the throughput measure."""
    view = memoryview(bytes(1 << 20))

    def send(conn):
        left = nbytes
        while left > 0:
            n = min(left, len(view))
            conn.sendall(view[:n])
            left -= n
        conn.shutdown(socket.SHUT_WR)
    return send


def echo(conn):
    """An echo service: what autossh's monitor talks to when given `-M PORT:ECHO_PORT`."""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)


def _get_status(s):
    """Sends one GET on the connected socket s; True when an HTTP status line came back."""
    s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
    data = b""
    while len(data) < 12:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.startswith(b"HTTP/1.")


def http_get(host, port, timeout=2.0):
    """One GET; True when an HTTP status line came back."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        return _get_status(s)


def socks_get(proxy_port, target_port, timeout=2.0):
    """One GET through a SOCKS5 proxy to 127.0.0.1:target_port; True when an HTTP status line came back."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as s:
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            return False
        s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + target_port.to_bytes(2, "big"))
        reply = b""
        while len(reply) < 10:
            chunk = s.recv(10 - len(reply))
            if not chunk:
                return False
            reply += chunk
        if reply[1] != 0:
            return False
        return _get_status(s)


def wait_usable(check, timeout):
    """wait_page for any check: polls every POLL s until check() is true. Returns perf_counter() or None."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if check():
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(POLL)
    return None


def wait_page(port, timeout, host="127.0.0.1"):
    """The wait loop every measure shares: GET every POLL s until a response. Returns perf_counter() or None."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if http_get(host, port, timeout=min(2.0, max(0.05, deadline - time.perf_counter()))):
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(POLL)
    return None


def helper_main(argv):
    p = argparse.ArgumentParser(prog="benchmarks helper")
    p.add_argument("mode", choices=HELPERS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--bytes", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--go-on-stdin", action="store_true", help="wait-http: print ready, start polling at a line on stdin, "
                   "print perf_counter() at the first page")
    a = p.parse_args(argv)
    if a.mode == "serve-http":
        serve(a.port, a.bind, http_reply)
    elif a.mode == "serve-echo":
        serve(a.port, a.bind, echo, backlog=64)
    elif a.mode == "serve-source":
        serve(a.port, a.bind, source(a.bytes), backlog=16)
    elif a.mode == "wait-http" and a.go_on_stdin:
        print("ready", flush=True)
        sys.stdin.readline()
        at = wait_page(a.port, a.timeout, host=a.bind)
        print(f"{at:.6f}" if at else "", flush=True)
        sys.exit(0 if at else 1)
    elif a.mode == "wait-http":
        sys.exit(0 if wait_page(a.port, a.timeout, host=a.bind) else 1)
    else:
        deadline = time.time() + a.timeout
        while time.time() < deadline:
            try:
                socket.create_connection((a.bind, a.port), timeout=0.5).close()
                sys.exit(0)
            except OSError:
                time.sleep(0.02)
        sys.exit(1)
