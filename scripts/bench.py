#!/usr/bin/env python3
"""Benchmarks fwd beside raw OpenSSH and autossh (issue 6). Run it through `scripts/bench`, which installs what it
needs and builds fwd in release mode first.

Everything runs against a private sshd on 127.0.0.1 (and, as root, an sshd in a network namespace of its own for
the silent-loss measure). Every process it starts carries FWD_BENCH_MARK=<its temporary directory> in its
environment, and the cleanup ends exactly those processes, removes its namespaces and its directory, on success,
failure or Ctrl-C. Standard library only.

Exit status: 0 when every selected measure was taken (a goal that is missed is a result, not an error; a measure
skipped because it needs root is reported as skipped), 1 when something could not be measured (the output says
what), 2 on bad arguments.
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SSHD = "/usr/sbin/sshd"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HELPERS = ("serve-http", "serve-source", "serve-echo", "wait-http", "wait-tcp")
POLL = 0.005  # the wait loop's interval, the same for fwd and every baseline
HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------------------------
# Helpers run as child processes (`bench.py serve-http …`), so the measuring process never serves traffic itself.

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


def http_get(host, port, timeout=2.0):
    """One GET; True when an HTTP status line came back."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while len(data) < 12:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.")


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
        s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while len(data) < 12:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.")


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
    p = argparse.ArgumentParser(prog="bench.py helper")
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


# ---------------------------------------------------------------------------------------------------------------
# /proc

def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid):
    """(state, ppid, utime+stime ticks) or None."""
    text = read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[11]) + int(fields[12])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def children_map():
    kids = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            kids.setdefault(st[1], []).append(pid)
    return kids


def descendants(pid, kids=None):
    kids = kids if kids is not None else children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def rss_kb(pid):
    text = read(f"/proc/{pid}/status") or ""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            values[key] = int(rest.split()[0])
    return values


def smaps_rollup_kb(pid):
    """Pss and Private (USS) from /proc/PID/smaps_rollup: shared library pages counted once across processes."""
    values = {}
    for line in (read(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Private_Clean", "Private_Dirty"):
            values[key] = int(rest.split()[0])
    return values.get("Pss", 0), values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)


def working_set_kb(pid):
    """(Rss, Referenced) from /proc/PID/smaps_rollup. Read after writing 1 to /proc/PID/clear_refs, Referenced
    counts the resident pages used since then: an upper bound, since a shared page that another process used
    counts too."""
    values = {}
    for line in (read(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Referenced"):
            values[key] = int(rest.split()[0])
    return values.get("Rss", 0), values.get("Referenced", 0)


def clear_refs(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def comm(pid):
    return (read(f"/proc/{pid}/comm") or "?").strip()


def cmdline(pid):
    raw = read(f"/proc/{pid}/cmdline", "rb") or b""
    return [x.decode(errors="replace") for x in raw.split(b"\0") if x]


def environ_has(pid, needle):
    raw = read(f"/proc/{pid}/environ", "rb")
    return raw is not None and needle in raw.split(b"\0")


def tcp_listening(port, hexaddr="0100007F"):
    want = f"{hexaddr}:{port:04X}"
    for line in (read("/proc/net/tcp") or "").splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[1] == want and cols[3] == "0A":
            return True
    return False


def listener_owner(port):
    """(pid, comm) of the process holding the LISTEN socket on 127.0.0.1:port, from /proc."""
    want = f"0100007F:{port:04X}"
    inodes = set()
    for line in (read("/proc/net/tcp") or "").splitlines()[1:]:
        cols = line.split()
        if len(cols) > 9 and cols[1] == want and cols[3] == "0A":
            inodes.add(f"socket:[{cols[9]}]")
    for pid in all_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid, comm(pid)
                except OSError:
                    pass
        except OSError:
            pass
    return None


def fnv1a32(text):
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


# ---------------------------------------------------------------------------------------------------------------

class CannotMeasure(Exception):
    pass


class PortPool:
    """Free TCP ports on 127.0.0.1 below the kernel's ephemeral range, so an outgoing connection cannot take one
    between the check and its use."""

    def __init__(self):
        lo, _ = (int(x) for x in (read("/proc/sys/net/ipv4/ip_local_port_range") or "32768 60999").split())
        self.next = random.randint(10000, max(10001, lo - 6000))
        self.limit = lo

    def take(self):
        while self.next < self.limit:
            port = self.next
            self.next += 1
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
            finally:
                s.close()
        raise CannotMeasure("no free TCP port left below the ephemeral range")


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_ms(s):
    if s is None:
        return "—"
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.0f} ms" if s >= 0.1 else f"{s * 1000:.1f} ms"


def fmt_s(s):
    return "—" if s is None else f"{s:.2f} s"


class Bench:
    def __init__(self, args):
        self.args = args
        self.fwd = os.path.abspath(args.fwd)
        self.python = sys.executable
        self.dir = tempfile.mkdtemp(prefix="fwdb-", dir="/tmp")
        os.chmod(self.dir, 0o700)
        self.mark = f"FWD_BENCH_MARK={self.dir}".encode()
        # fwd runs with its defaults: none of the caller's FWD_* settings (probe interval, ssh, templates) leak in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FWD_")}
        self.env.update(FWD_BENCH_MARK=self.dir, NO_COLOR="1", LC_ALL="C")
        self.env.pop("SSH_AUTH_SOCK", None)  # the lab key is the only key; no agent of the user's is asked
        self.ports = PortPool()
        self.children = []
        self.state_dirs = []
        self.namespaces = []
        self.rows = []        # (measure, fwd, baseline, ratio, goal, met)
        self.details = []     # markdown lines
        self.failures = []    # what could not be measured
        self.skipped = []
        self.sshd = None
        self.log = None
        self.load_start = f"{os.getloadavg()[0]:.2f}"
        self.loads = []

    # -- output --------------------------------------------------------------------------------------------------

    def say(self, text):
        print(f"==> {text}", flush=True)

    def row(self, measure, fwd, baseline, ratio, goal, met):
        self.rows.append((measure, fwd, baseline, ratio, goal, met))

    def detail(self, text):
        self.details.append(text)

    # -- processes -----------------------------------------------------------------------------------------------

    def spawn(self, argv, env=None, stdout=subprocess.DEVNULL, stderr=None, extra_env=None, stdin=subprocess.DEVNULL, **kw):
        e = dict(env or self.env)
        if extra_env:
            e.update(extra_env)
        if stderr is None:
            if self.log is None:
                self.log = open(os.path.join(self.dir, "children.log"), "ab")
            stderr = self.log
        p = subprocess.Popen(argv, env=e, stdin=stdin, stdout=stdout, stderr=stderr, **kw)
        self.children.append(p)
        return p

    def run(self, argv, env=None, timeout=60, check=False):
        p = subprocess.run(argv, env=env or self.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise CannotMeasure(f"`{' '.join(argv)}` exited {p.returncode}: "
                                f"{(p.stderr or p.stdout).decode(errors='replace').strip()[-600:]}")
        return p

    def helper(self, mode, *args, ns=None, **kw):
        argv = [self.python, os.path.abspath(__file__), mode] + [str(a) for a in args]
        if ns:
            argv = ["ip", "netns", "exec", ns] + argv
        return argv

    def start_server(self, mode, *args, ns=None):
        p = self.spawn(self.helper(mode, *args, ns=ns), stdout=subprocess.PIPE)
        line = p.stdout.readline()
        if line.strip() != b"ready":
            raise CannotMeasure(f"the {mode} helper did not start (see {self.dir}/children.log)")
        return p

    def marked(self, extra=None):
        """Processes started by this run (their environment carries the mark), optionally also carrying `extra`."""
        me = os.getpid()
        out = []
        for pid in all_pids():
            if pid != me and environ_has(pid, self.mark) and (extra is None or environ_has(pid, extra)):
                out.append(pid)
        return out

    def kill_pids(self, pids, grace=2.0):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(alive(p) for p in pids):
            self.reap()
            time.sleep(0.02)
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.reap()

    def reap(self):
        for p in self.children:
            p.poll()
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def fwd_env(self, name, config, ssh_config):
        state = os.path.join(self.dir, "state", name)
        if state not in self.state_dirs:
            self.state_dirs.append(state)
        return dict(self.env, FWD_CONFIG=config, FWD_STATE_DIR=state, FWD_SSH_CONFIG=ssh_config)

    def fwd_stop(self, env, ns=None):
        prefix = ["ip", "netns", "exec", ns] if ns else []
        try:
            self.run(prefix + [self.fwd, "down", "--all", "--timeout", "10"], env=env, timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.run(prefix + [self.fwd, "daemon", "--stop"], env=env, timeout=15)
        except subprocess.TimeoutExpired:
            pass
        state = env["FWD_STATE_DIR"].encode()
        self.kill_pids(self.marked(b"FWD_STATE_DIR=" + state))

    def supervisor_pid(self, env):
        state = b"FWD_STATE_DIR=" + env["FWD_STATE_DIR"].encode()
        for pid in self.marked(state):
            if cmdline(pid)[1:2] == ["daemon"]:
                return pid
        return None

    def cleanup(self):
        for state in self.state_dirs:
            if os.path.isdir(state):
                env = dict(self.env, FWD_STATE_DIR=state, FWD_CONFIG=os.path.join(self.dir, "none.toml"))
                try:
                    self.run([self.fwd, "daemon", "--stop"], env=env, timeout=15)
                except Exception:
                    pass
        kids = children_map()
        trees = [d for p in self.children for d in descendants(p.pid, kids)]
        for p in self.children:
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        self.kill_pids(self.marked() + [p for p in trees if alive(p)])
        for p in self.children:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        for state in self.state_dirs:
            shutil.rmtree(f"/tmp/fwd-{os.geteuid()}-{fnv1a32(state):x}", ignore_errors=True)
        if self.args.keep:
            print(f"(kept {self.dir})")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the lab -------------------------------------------------------------------------------------------------

    def keygen(self, path):
        if not os.path.exists(path):
            self.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fwd-bench", "-f", path], check=True)

    def setup_lab(self):
        d = os.path.join(self.dir, "lab")
        os.makedirs(d, mode=0o700)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.hostkey = os.path.join(d, "hostkey")
        self.clientkey = os.path.join(d, "client_ed25519")
        self.keygen(self.hostkey)
        self.keygen(self.clientkey)
        shutil.copy(self.clientkey + ".pub", os.path.join(d, "authorized_keys"))
        hostpub = " ".join(read(self.hostkey + ".pub").split()[:2])
        self.user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        # Ten ports on one sshd: ten host aliases whose ControlPath (%C hashes host, port and user) differ.
        self.sshd_ports = [self.ports.take() for _ in range(10)]
        self.hosts = [f"bench{i}" for i in range(10)]
        self.known_hosts = os.path.join(d, "known_hosts")
        with open(self.known_hosts, "w") as f:
            for port in self.sshd_ports:
                f.write(f"[127.0.0.1]:{port} {hostpub}\n")
        self.sshd_config = os.path.join(d, "sshd_config")
        self.write_sshd_config(self.sshd_config, [f"127.0.0.1:{p}" for p in self.sshd_ports], d)
        self.run([SSHD, "-t", "-f", self.sshd_config], check=True)
        # The user's ssh_config (what FWD_SSH_CONFIG points at), and what plain ssh reads for the baselines:
        # the same file followed by the system one, as fwd's own root config does.
        self.user_ssh_config = os.path.join(d, "ssh_config")
        with open(self.user_ssh_config, "w") as f:
            for host, port in zip(self.hosts, self.sshd_ports):
                f.write(self.host_block(host, "127.0.0.1", port, self.known_hosts))
        self.raw_ssh_config = os.path.join(d, "ssh_config.raw")
        with open(self.raw_ssh_config, "w") as f:
            f.write(f"Include {self.user_ssh_config}\nInclude /etc/ssh/ssh_config\n")
        self.start_sshd()
        self.http_port = self.ports.take()
        self.start_server("serve-http", "--port", self.http_port)
        if not wait_page(self.http_port, 5):
            raise CannotMeasure("the benchmark's HTTP server does not answer")
        self.say(f"private sshd on 127.0.0.1:{self.sshd_ports[0]}…{self.sshd_ports[-1]} (10 ports), "
                 f"HTTP target on 127.0.0.1:{self.http_port}, everything in {self.dir}")

    def write_sshd_config(self, path, listen, d):
        lines = [f"ListenAddress {a}" for a in listen] + [
            f"HostKey {self.hostkey}",
            f"PidFile {os.path.join(d, 'sshd-' + os.path.basename(path) + '.pid')}",
            f"AuthorizedKeysFile {os.path.join(self.dir, 'lab', 'authorized_keys')}",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "AllowTcpForwarding yes", "GatewayPorts no",
            "StreamLocalBindUnlink yes", "ClientAliveInterval 5",
            # 200 clients connect at once in the footprint measure.
            "MaxStartups 400:30:500", "MaxSessions 400", "LogLevel ERROR",
        ]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def host_block(self, alias, hostname, port, known_hosts):
        return (f"Host {alias}\n    HostName {hostname}\n    Port {port}\n    User {self.user}\n"
                f"    IdentityFile {self.clientkey}\n    IdentitiesOnly yes\n    UserKnownHostsFile {known_hosts}\n"
                f"    StrictHostKeyChecking yes\n    BatchMode yes\n\n")

    def start_sshd(self):
        self.sshd = self.spawn([SSHD, "-D", "-e", "-f", self.sshd_config],
                               stderr=open(os.path.join(self.dir, "lab", "sshd.log"), "ab"))
        deadline = time.time() + 5
        while time.time() < deadline:
            if all(tcp_listening(p) for p in self.sshd_ports):
                return time.perf_counter()
            if self.sshd.poll() is not None:
                raise CannotMeasure(f"sshd exited at start; see {self.dir}/lab/sshd.log")
            time.sleep(0.001)
        raise CannotMeasure("sshd did not listen within 5 s")

    def crash_sshd(self):
        """SIGKILL to the listener and every session process at once, as in a crash. (sshd rewrites its process
        title over its environment, so sshd processes are found as the listener's descendants, not by the mark.)"""
        pids = [self.sshd.pid] + descendants(self.sshd.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and any(alive(p) for p in pids):
            self.reap()
            time.sleep(0.005)
        self.reap()

    def write_fwd_config(self, path, tunnels, groups=None):
        """tunnels: (name, host, local spec, probe)."""
        out = ["# written by scripts/bench"]
        for name, host, spec, probe in tunnels:
            out += [f"[tunnels.{name}]", f'host = "{host}"', f'local = "{spec}"', f'probe = "{probe}"', ""]
        if groups:
            out.append("[groups]")
            for g, members in groups.items():
                out.append(f"{g} = [{', '.join(json.dumps(m) for m in members)}]")
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")

    def raw_ssh_pids(self, needle):
        return [p for p in self.marked() if any(needle in a for a in cmdline(p)) and comm(p) == "ssh"]

    def measure(self, title, fn):
        self.say(title)
        before = os.getloadavg()[0]
        try:
            fn()
        except CannotMeasure as e:
            self.failures.append(f"{title}: {e}")
            self.say(f"could not measure: {e}")
        except subprocess.TimeoutExpired as e:
            self.failures.append(f"{title}: `{' '.join(map(str, e.cmd))}` did not finish within {e.timeout} s")
            self.say(f"could not measure: {e}")
        except (OSError, ValueError, ZeroDivisionError, TypeError, KeyError, IndexError) as e:
            self.failures.append(f"{title}: {type(e).__name__}: {e}")
            self.say(f"could not measure: {type(e).__name__}: {e}")
        finally:
            self.loads.append(f"{title}: {before:.1f} → {os.getloadavg()[0]:.1f}")

    # -- 1. cold up ----------------------------------------------------------------------------------------------

    def cold_up(self):
        runs = self.args.runs
        fwd_t, raw_t, fwd_cmd_t, raw_cmd_t, phases = [], [], [], [], []
        config = os.path.join(self.dir, "cold.toml")
        for i in range(runs + 1):  # run 0 warms the page cache for both and is not counted
            order = ["fwd", "raw"] if i % 2 == 0 else ["raw", "fwd"]
            for who in order:
                port = self.ports.take()
                spec = f"127.0.0.1:{port}:127.0.0.1:{self.http_port}"
                if who == "fwd":
                    self.write_fwd_config(config, [("t1", "bench0", spec, "http")])
                    env = self.fwd_env(f"cold{i}", config, self.user_ssh_config)
                    wall0 = time.time()
                    t0 = time.perf_counter()
                    p = self.run([self.fwd, "up", "t1", "-q"], env=env, timeout=60)
                    t1 = time.perf_counter()
                    ok = wait_page(port, 30)
                    if p.returncode != 0 or ok is None:
                        raise CannotMeasure(f"`fwd up` exited {p.returncode} / page {'ok' if ok else 'never loaded'}: "
                                            f"{p.stderr.decode(errors='replace').strip()[-400:]}")
                    if i:
                        fwd_t.append(ok - t0)
                        fwd_cmd_t.append(t1 - t0)
                        phases.append(self.cold_phases(env, wall0, t1 - t0, ok - t0))
                    self.fwd_stop(env)
                else:
                    t0 = time.perf_counter()
                    p = self.run(["ssh", "-F", self.raw_ssh_config, "-f", "-N", "-o", "ExitOnForwardFailure=yes",
                                  "-L", spec, "bench0"], timeout=60)
                    t1 = time.perf_counter()
                    ok = wait_page(port, 30)
                    if p.returncode != 0 or ok is None:
                        raise CannotMeasure(f"`ssh -f -N -L` exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                    if i:
                        raw_t.append(ok - t0)
                        raw_cmd_t.append(t1 - t0)
                    self.kill_pids(self.raw_ssh_pids(spec))
        f, r = median(fwd_t), median(raw_t)
        self.row("1. Cold up → first HTTP response (`fwd up` incl. starting the supervisor vs `ssh -f -N -L`)",
                 fmt_ms(f), fmt_ms(r), f"{f / r:.2f}×", "≤ 1.1× raw", "yes" if f <= 1.1 * r else "no")
        self.detail("### 1. Cold up\n")
        self.detail(f"fwd runs (ms): {self.ms_list(fwd_t)}; of which the `fwd up` command itself: {self.ms_list(fwd_cmd_t)}  ")
        self.detail(f"raw runs (ms): {self.ms_list(raw_t)}; of which `ssh -f` itself: {self.ms_list(raw_cmd_t)}  ")
        self.phase_table(phases)

    def phase_table(self, phases):
        if not phases:
            return
        keys = phases[0].keys()
        med = {k: median([p[k] for p in phases if p.get(k) is not None]) for k in keys}
        self.detail("\nWhere fwd's time goes (medians, ms from the start of `fwd up`, from the supervisor's event log):\n")
        self.detail("| point | ms |\n|---|---|")
        for k in keys:
            if med[k] is not None:
                self.detail(f"| {k} | {med[k] * 1000:.0f} |")
        self.detail("")

    def cold_phases(self, env, wall0, cmd, page, usable="page loaded"):
        """Reads the supervisor's event log (times to the ms) and returns offsets from the start of `fwd up`."""
        out = {}
        p = self.run([self.fwd, "logs", "--lines", "100"], env=env, timeout=10)
        events = []
        for line in p.stdout.decode(errors="replace").splitlines():
            try:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            if stamp >= wall0 - 0.002:  # a reused state directory keeps earlier runs' events
                events.append((stamp - wall0, line[23:].strip()))

        def first(pred):
            return next((t for t, text in events if pred(text)), None)
        out["supervisor started"] = first(lambda t: "supervisor started" in t)
        out["request reached the host runner (→ starting)"] = first(lambda t: "→ starting" in t)
        out["master ready and forwards added"] = first(lambda t: "master: connected" in t)
        out["tunnel up (probe passed)"] = first(lambda t: "→ up" in t)
        out["`fwd up` returned"] = cmd
        out[usable] = page
        return out

    @staticmethod
    def ms_list(xs):
        return ", ".join(f"{x * 1000:.0f}" for x in xs)

    # -- 8. cold up per forward type (issue 12) -------------------------------------------------------------------

    def forward_usable(self, kind, port):
        """How a user sees each forward work: a page through -L, a page through the -D proxy (CONNECT, then GET),
        and a page from the -R listener on the server (here the server is this machine)."""
        if kind == "dynamic":
            return lambda: socks_get(port, self.http_port, timeout=1.0)
        return lambda: http_get("127.0.0.1", port, timeout=1.0)

    def forward_spec(self, kind, port):
        return {"local": f"127.0.0.1:{port}:127.0.0.1:{self.http_port}", "dynamic": f"127.0.0.1:{port}",
                "remote": f"127.0.0.1:{port}:127.0.0.1:{self.http_port}"}[kind]

    def write_typed_config(self, path, tunnels, probe=None):
        """tunnels: (name, host, kind, spec); every tunnel with its default probe unless `probe` names one."""
        out = ["# written by scripts/bench"]
        for name, host, kind, spec in tunnels:
            out += [f"[tunnels.{name}]", f'host = "{host}"', f'{kind} = "{spec}"'] + ([f'probe = "{probe}"'] if probe else []) + [""]
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")

    def cold_up_types(self):
        """No supervisor and no master before each `fwd up`. The row's figure is the usual cold up: fwd has run
        before, so its state directory exists (one per forward type, made in the uncounted run 0). The detail
        also gives the very first run, whose `fwd up` creates the state directory and the database."""
        runs = self.args.runs
        config = os.path.join(self.dir, "cold-types.toml")
        flag = {"local": "-L", "dynamic": "-D", "remote": "-R"}
        for kind in ("local", "dynamic", "remote"):
            times = {"fwd": [], "first": [], "raw": []}
            fwd_cmd_t, phases = [], []
            order = ["fwd", "raw", "first"]
            for i in range(runs + 1):  # run 0 warms caches (and makes the reused state directory) and is not counted
                for who in order[i % 3:] + order[:i % 3]:
                    port = self.ports.take()
                    spec = self.forward_spec(kind, port)
                    usable = self.forward_usable(kind, port)
                    if who in ("fwd", "first"):
                        self.write_typed_config(config, [("t1", "bench0", kind, spec)])
                        env = self.fwd_env(f"cold-{kind}" if who == "fwd" else f"cold-{kind}-first{i}", config, self.user_ssh_config)
                        wall0 = time.time()
                        t0 = time.perf_counter()
                        p = self.run([self.fwd, "up", "t1", "-q"], env=env, timeout=60)
                        t1 = time.perf_counter()
                        ok = wait_usable(usable, 30)
                        if p.returncode != 0 or ok is None:
                            raise CannotMeasure(f"{kind}: `fwd up` exited {p.returncode} / {'usable' if ok else 'never usable'}: "
                                                f"{p.stderr.decode(errors='replace').strip()[-400:]}")
                        if i:
                            times[who].append(max(ok, t1) - t0)
                            if who == "fwd":
                                fwd_cmd_t.append(t1 - t0)
                                phases.append(self.cold_phases(env, wall0, t1 - t0, ok - t0, "forward usable"))
                        self.fwd_stop(env)
                    else:
                        t0 = time.perf_counter()
                        p = self.run(["ssh", "-F", self.raw_ssh_config, "-f", "-N", "-o", "ExitOnForwardFailure=yes",
                                      flag[kind], spec, "bench0"], timeout=60)
                        ok = wait_usable(usable, 30)
                        if p.returncode != 0 or ok is None:
                            raise CannotMeasure(f"{kind}: `ssh -f -N {flag[kind]}` exited {p.returncode}: "
                                                f"{p.stderr.decode(errors='replace')[-300:]}")
                        if i:
                            times["raw"].append(ok - t0)
                        self.kill_pids(self.raw_ssh_pids(spec))
            f, r, c, first = median(times["fwd"]), median(times["raw"]), median(fwd_cmd_t), median(times["first"])
            self.row(f"9. Cold up, {kind} forward ({flag[kind]}, default probe): `fwd up` returned and the forward "
                     f"usable vs raw `ssh -f -N {flag[kind]}` usable", fmt_ms(f), fmt_ms(r), f"{f / r:.2f}×", "≤ 1.2× raw",
                     "yes" if f <= 1.2 * r else "no")
            self.detail(f"### 9. Cold up, {kind} forward\n")
            self.detail(f"fwd (ms, until both `fwd up` returned and the forward was usable; no supervisor, no master, "
                        f"state directory from an earlier run): {self.ms_list(times['fwd'])}; `fwd up` alone: "
                        f"{self.ms_list(fwd_cmd_t)} (median {fmt_ms(c)})  ")
            self.detail(f"fwd's very first run (a new state directory and database each time): "
                        f"{self.ms_list(times['first'])} (median {fmt_ms(first)}, {first / r:.2f}× raw)  ")
            self.detail(f"raw ssh (ms, until usable): {self.ms_list(times['raw'])}  ")
            self.phase_table(phases)

    # -- 9. idle CPU with every forward type (issue 12) ------------------------------------------------------------

    def idle_cpu_types(self):
        n = 20
        tunnels = []
        for kind in ("local", "dynamic", "remote"):
            for i in range(n):
                tunnels.append((f"{kind[0]}{i:02d}", "bench0", kind, self.forward_spec(kind, self.ports.take())))
        results = {}
        # The same 60 tunnels with probe = "none" separate what probing costs from the supervisor's own rounds.
        for probe in (None, "none"):
            config = os.path.join(self.dir, f"idle-types-{probe or 'default'}.toml")
            self.write_typed_config(config, tunnels, probe)
            with open(config, "a") as f:
                f.write("[groups]\nall = [" + ", ".join(json.dumps(t[0]) for t in tunnels) + "]\n")
            env = self.fwd_env(f"idle-types-{probe or 'default'}", config, self.user_ssh_config)
            try:
                self.run([self.fwd, "up", "all", "-q", "--timeout", "120"], env=env, timeout=180, check=True)
                p = self.run([self.fwd, "status", "--json"], env=env, timeout=30, check=True)
                states = [t["state"] for t in json.loads(p.stdout)]
                if states.count("up") != len(tunnels):
                    raise CannotMeasure(f"not every tunnel is up: {sorted(set(states))}")
                time.sleep(2)
                sup = self.supervisor_pid(env)
                if not sup:
                    raise CannotMeasure("cannot find fwd's supervisor process")
                threads = len(os.listdir(f"/proc/{sup}/task"))
                idle = self.idle_cpu(sup)
                idle["threads"] = (threads, len(os.listdir(f"/proc/{sup}/task")))
                results[probe] = idle
            finally:
                self.fwd_stop(env)
        idle, none = results[None], results["none"]
        self.row(f"10. Supervisor idle CPU over {self.args.idle_seconds:g} s, 20 local + 20 dynamic + 20 remote tunnels "
                 "on one host, default probes every 2 s", f"{idle['sup']:.2f} % of a core",
                 f"same tunnels with probe = \"none\": {none['sup']:.2f} %; master: {idle['masters']:.2f} % "
                 f"(none: {none['masters']:.2f} %)", "—", "≤ 1 %", "yes" if idle["sup"] <= 1 else "no")
        self.detail("### 10. Idle CPU, every forward type\n")
        self.detail("60 tunnels, default probes (tcp through the master, SOCKS handshake plus the master's transport "
                    "round trip at most every 30 s, remote through the master's control socket). Supervisor threads "
                    f"{idle['threads'][0]} before and {idle['threads'][1]} after the window (probes share one poll "
                    f"thread; no ssh process is started per probe). With probe = \"none\" the supervisor still runs "
                    f"its rounds, but a round whose results equal the last ones written writes nothing: {none['sup']:.2f} % of a core.  \n")

    # -- 2. warm add ---------------------------------------------------------------------------------------------

    def warm_add(self):
        runs = self.args.runs
        config = os.path.join(self.dir, "warm.toml")
        base = self.ports.take()
        tunnels = [("t1", "bench0", f"127.0.0.1:{base}:127.0.0.1:{self.http_port}", "http")]
        add_ports = {}
        for i in range(runs + 1):
            for probe in ("http", "tcp", "busy"):
                port = self.ports.take()
                name = f"t2-{probe}-{i}"
                add_ports[name] = port
                tunnels.append((name, "bench0", f"127.0.0.1:{port}:127.0.0.1:{self.http_port}",
                                "http" if probe == "busy" else probe))
        # 20 tunnels with the default probe, brought up on the same host for 2c
        crowd = [f"crowd-{i:02d}" for i in range(20)]
        tunnels += [(n, "bench0", f"127.0.0.1:{self.ports.take()}:127.0.0.1:{self.http_port}", "tcp") for n in crowd]
        self.write_fwd_config(config, tunnels, groups={"crowd": crowd})
        env = self.fwd_env("warm", config, self.user_ssh_config)
        self.run([self.fwd, "up", "t1", "-q"], env=env, timeout=60, check=True)
        sock = os.path.join(self.dir, "raw-master.sock")
        self.run(["ssh", "-F", self.raw_ssh_config, "-f", "-N", "-M", "-S", sock, "-o", "ControlPersist=no", "bench0"],
                 timeout=30, check=True)
        fwd_t, fwd_cmd, tcp_t, raw_t, raw_cmd, getfwd, busy_t = [], [], [], [], [], [], []
        try:
            for i in range(runs + 1):
                for who in (["fwd", "raw"] if i % 2 == 0 else ["raw", "fwd"]):
                    if who == "fwd":
                        name = f"t2-http-{i}"
                        t0 = time.perf_counter()
                        p = self.run([self.fwd, "up", name, "-q"], env=env, timeout=60)
                        t1 = time.perf_counter()
                        ok = wait_page(add_ports[name], 10)
                        if p.returncode or ok is None:
                            raise CannotMeasure(f"`fwd up {name}` exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                        if i:
                            fwd_t.append(ok - t0)
                            fwd_cmd.append(t1 - t0)
                        self.run([self.fwd, "down", name], env=env, timeout=30)
                    else:
                        port = self.ports.take()
                        spec = f"127.0.0.1:{port}:127.0.0.1:{self.http_port}"
                        argv = ["ssh", "-F", "none", "-S", sock, "-O", "forward", "-L", spec, "fwd-mux"]
                        t0 = time.perf_counter()
                        p = self.run(argv, timeout=30)
                        t1 = time.perf_counter()
                        ok = wait_page(port, 10)
                        if p.returncode or ok is None:
                            raise CannotMeasure(f"`ssh -O forward` exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                        if i:
                            raw_t.append(ok - t0)
                            raw_cmd.append(t1 - t0)
                        self.run(["ssh", "-F", "none", "-S", sock, "-O", "cancel", "-L", spec, "fwd-mux"], timeout=30)
                # the default probe (tcp), for the record: it waits out a 250 ms settle window
                name = f"t2-tcp-{i}"
                t0 = time.perf_counter()
                p = self.run([self.fwd, "up", name, "-q"], env=env, timeout=60)
                ok = wait_page(add_ports[name], 10)
                if p.returncode or ok is None:
                    raise CannotMeasure(f"`fwd up {name}` (tcp probe) exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                if i:
                    tcp_t.append(ok - t0)
                self.run([self.fwd, "down", name], env=env, timeout=30)
            # 2c: the same add on a host that already carries 20 tunnels with the default tcp probe
            self.run([self.fwd, "up", "crowd", "-q", "--timeout", "120"], env=env, timeout=180, check=True)
            for i in range(runs + 1):
                name = f"t2-busy-{i}"
                t0 = time.perf_counter()
                p = self.run([self.fwd, "up", name, "-q", "--timeout", "60"], env=env, timeout=90)
                ok = wait_page(add_ports[name], 10)
                if p.returncode or ok is None:
                    raise CannotMeasure(f"`fwd up {name}` beside 20 tunnels exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                if i:
                    busy_t.append(ok - t0)
                self.run([self.fwd, "down", name], env=env, timeout=60)
            self.run([self.fwd, "down", "crowd"], env=env, timeout=60)
            # Reference costs: one `ssh -G` (what a config change costs per host) and the Swift process start,
            # which every `fwd up` pays before its `ssh -O forward`.
            for _ in range(runs):
                t0 = time.perf_counter()
                self.run(["ssh", "-F", os.path.join(env["FWD_STATE_DIR"], "ssh_config"), "-G", "-T", "bench0"])
                getfwd.append(time.perf_counter() - t0)
            start = []
            for _ in range(runs):
                t0 = time.perf_counter()
                self.run([self.fwd, "--help"], env=env)
                start.append(time.perf_counter() - t0)
        finally:
            self.run(["ssh", "-F", "none", "-S", sock, "-O", "exit", "fwd-mux"], timeout=10)
            self.fwd_stop(env)
        f, r = median(fwd_t), median(raw_t)
        met = f <= 1.3 * r and f <= 0.050
        self.row("2. Warm add → first HTTP response (`fwd up t2` vs `ssh -O forward`, master up)",
                 fmt_ms(f), fmt_ms(r), f"{f / r:.1f}×", "≤ 1.3× raw and ≤ 50 ms", "yes" if met else "no")
        self.row("2b. Warm add with the default `tcp` probe (for the record)", fmt_ms(median(tcp_t)), fmt_ms(r),
                 f"{median(tcp_t) / r:.1f}×" if tcp_t else "—", "—", "—")
        self.row("2c. Warm add (probe = http) on a host already carrying 20 tunnels with the default `tcp` probe",
                 fmt_ms(median(busy_t)), fmt_ms(r), f"{median(busy_t) / r:.0f}×" if busy_t else "—", "≤ 1.3× raw and ≤ 50 ms",
                 "yes" if busy_t and median(busy_t) <= min(0.050, 1.3 * r) else "no")
        self.detail("### 2. Warm add\n")
        self.detail(f"fwd beside 20 tcp-probed tunnels on the same host, runs (ms): {self.ms_list(busy_t)}  ")
        self.detail(f"fwd (probe = http) runs (ms): {self.ms_list(fwd_t)}; the command alone: {self.ms_list(fwd_cmd)}  ")
        self.detail(f"fwd (probe = tcp, the default) runs (ms): {self.ms_list(tcp_t)}  ")
        self.detail(f"raw `ssh -F none -S SOCK -O forward -L …` runs (ms): {self.ms_list(raw_t)}; the command alone: {self.ms_list(raw_cmd)}  ")
        self.detail(f"one `ssh -G` with fwd's config: median {fmt_ms(median(getfwd))}; "
                    f"starting the fwd binary (`fwd --help`): median {fmt_ms(median(start))}\n")

    # -- 3. recovery ---------------------------------------------------------------------------------------------

    def recovery(self):
        autossh = shutil.which("autossh")
        if not autossh:
            raise CannotMeasure("autossh is not installed (apt-get install autossh)")
        runs = self.args.runs
        config = os.path.join(self.dir, "recovery.toml")
        results = {"fwd": [], "autossh": [], "autossh-tuned": []}
        down_for = self.args.down_seconds
        # autossh's default monitor (-M PORT) is a loop: -L PORT on the client and -R PORT on the server. With both
        # on one host the two listeners collide ("remote port forwarding failed"), so here it monitors through an
        # echo port instead (-M PORT:ECHO), its documented alternative; its polling (600 s) and its restart logic,
        # which is what this measures, are the defaults. The namespace measure (4) runs the real loop.
        echo = self.ports.take()
        self.start_server("serve-echo", "--port", echo)
        tools = list(results)
        for i in range(runs):
            # Run by run, each tool in turn, starting with a different one each run: a load change on the shared
            # machine then falls on all three alike.
            for who in tools[i % len(tools):] + tools[:i % len(tools)]:
                port = self.ports.take()
                spec = f"127.0.0.1:{port}:127.0.0.1:{self.http_port}"
                env = None
                if who == "fwd":
                    self.write_fwd_config(config, [("t1", "bench0", spec, "http")])
                    env = self.fwd_env(f"recovery{i}", config, self.user_ssh_config)
                    self.run([self.fwd, "up", "t1", "-q"], env=env, timeout=60, check=True)
                    proc = None
                else:
                    argv = ["autossh"] + (["-M", "0", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
                                          if who == "autossh-tuned" else ["-M", f"{self.ports.take()}:{echo}"]) + \
                           ["-N", "-F", self.raw_ssh_config, "-o", "ExitOnForwardFailure=yes", "-L", spec, "bench0"]
                    # A connection younger than AUTOSSH_GATETIME (30 s) that drops makes autossh give up ("ssh exited
                    # prematurely"); 0 turns that start gate off, so it restarts as it would after 30 s of uptime.
                    proc = self.spawn(argv, extra_env={"AUTOSSH_GATETIME": "0"})
                if wait_page(port, 30) is None:
                    raise CannotMeasure(f"{who}: the page never loaded before the crash")
                time.sleep(1.0)
                self.crash_sshd()
                time.sleep(down_for)
                t_listen = self.start_sshd()
                ok = wait_page(port, 30)
                if ok is None:
                    raise CannotMeasure(f"{who} did not bring the page back within 30 s of sshd listening again")
                results[who].append(ok - t_listen)
                if proc:
                    self.kill_pids([proc.pid] + descendants(proc.pid))
                else:
                    self.fwd_stop(env)
        f = median(results["fwd"])
        for who, label in (("autossh", "autossh defaults, monitor via echo port"),
                           ("autossh-tuned", "autossh -M 0, ServerAlive 5×3")):
            b = median(results[who])
            self.row(f"3. Recovery after an sshd crash: sshd listening → page loads (vs {label})",
                     fmt_ms(f), fmt_ms(b), f"{f / b:.2f}×", "≤ 0.3 s", "yes" if f <= 0.3 else "no")
        self.detail(f"### 3. Recovery\n\nsshd (listener and every session) SIGKILLed, restarted {down_for:g} s later (autossh runs with "
                    "AUTOSSH_GATETIME=0: otherwise a connection younger than 30 s that drops makes it give up); "
                    "clock starts when its port is in LISTEN (from /proc/net/tcp), stops at the first HTTP response "
                    f"through the forward (polled every {POLL * 1000:.0f} ms).\n")
        for who, xs in results.items():
            self.detail(f"{who} runs (ms): {self.ms_list(xs)}  ")
        self.detail("")

    # -- 4. silent loss ------------------------------------------------------------------------------------------

    def namespace_lab(self, cns, sns, cif, sif, client_address, name, promote=False):
        """A veth pair from the client namespace to the server namespace, an sshd on 198.18.0.1:22 and an HTTP
        server on :8080 in the server namespace, and the ssh_config files for host `nsbench`. Returns
        (dir, user ssh_config, raw ssh_config)."""
        setup = [["ip", "-n", cns, "link", "add", cif, "type", "veth", "peer", "name", sif, "netns", sns]]
        if promote:
            # Keep the new address when the old (primary) one goes, as address managers do.
            setup.append(["ip", "netns", "exec", cns, "sysctl", "-q", "-w", f"net.ipv4.conf.{cif}.promote_secondaries=1"])
        setup += [["ip", "-n", cns, "addr", "add", f"{client_address}/24", "dev", cif],
                  ["ip", "-n", sns, "addr", "add", "198.18.0.1/24", "dev", sif],
                  ["ip", "-n", cns, "link", "set", cif, "up"], ["ip", "-n", cns, "link", "set", "lo", "up"],
                  ["ip", "-n", sns, "link", "set", sif, "up"], ["ip", "-n", sns, "link", "set", "lo", "up"]]
        for argv in setup:
            self.run(argv, check=True)
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        conf = os.path.join(d, "sshd_config")
        self.write_sshd_config(conf, ["198.18.0.1:22"], d)
        self.spawn(["ip", "netns", "exec", sns, SSHD, "-D", "-e", "-f", conf],
                   stderr=open(os.path.join(d, "sshd.log"), "ab"))
        self.start_server("serve-http", "--port", 8080, ns=sns)
        if self.run(self.helper("wait-tcp", "--bind", "198.18.0.1", "--port", 22, "--timeout", 10, ns=cns), timeout=20).returncode:
            raise CannotMeasure("the namespace sshd is not reachable from the client namespace")
        hostpub = " ".join(read(self.hostkey + ".pub").split()[:2])
        known = os.path.join(d, "known_hosts")
        with open(known, "w") as f:
            f.write(f"198.18.0.1 {hostpub}\n")
        user_cfg = os.path.join(d, "ssh_config")
        with open(user_cfg, "w") as f:
            f.write(self.host_block("nsbench", "198.18.0.1", 22, known))
        raw_cfg = os.path.join(d, "ssh_config.raw")
        with open(raw_cfg, "w") as f:
            f.write(f"Include {user_cfg}\nInclude /etc/ssh/ssh_config\n")
        return d, user_cfg, raw_cfg

    def detection(self):
        if os.geteuid() != 0:
            self.skipped.append("4. Detection of a silent loss: needs root (network namespaces, iptables); skipped")
            self.row("4. Detection of a silent loss", "skipped (needs root)", "—", "—", "≤ 3 s", "—")
            return
        for tool in ("ip", "autossh"):
            if not shutil.which(tool):
                raise CannotMeasure(f"{tool} is not installed")
        use_nft = not shutil.which("iptables")
        if use_nft and not shutil.which("nft"):
            raise CannotMeasure("neither iptables nor nft is installed")
        tag = f"{random.randrange(16 ** 4):04x}"
        cns, sns = f"fwdb{tag}c", f"fwdb{tag}s"
        cif, sif = f"fwdb{tag}c0", f"fwdb{tag}s0"
        for ns in (cns, sns):
            self.run(["ip", "netns", "add", ns], check=True)
            self.namespaces.append(ns)
        procs_before = set(self.marked()) | {p.pid for p in self.children}
        env = None
        try:
            d, user_cfg, raw_cfg = self.namespace_lab(cns, sns, cif, sif, "198.18.0.2", "ns")
            fport, tport, dport = 18080, 18081, 18082
            config = os.path.join(d, "fwd.toml")
            self.write_fwd_config(config, [("nt", "nsbench", f"127.0.0.1:{fport}:127.0.0.1:8080", "http")])
            env = self.fwd_env("ns", config, user_cfg)
            if use_nft:
                drop = [["nft", "add", "table", "inet", "fwdbench"],
                        ["nft", "add", "chain", "inet", "fwdbench", "in", "{ type filter hook input priority 0 ; }"],
                        ["nft", "add", "chain", "inet", "fwdbench", "out", "{ type filter hook output priority 0 ; }"],
                        ["nft", "add", "rule", "inet", "fwdbench", "in", "iifname", sif, "drop"],
                        ["nft", "add", "rule", "inet", "fwdbench", "out", "oifname", sif, "drop"]]
                undrop = [["nft", "delete", "table", "inet", "fwdbench"]]
            else:
                drop = [["iptables", "-w", "-I", "INPUT", "-i", sif, "-j", "DROP"],
                        ["iptables", "-w", "-I", "OUTPUT", "-o", sif, "-j", "DROP"]]
                undrop = [["iptables", "-w", "-D", "INPUT", "-i", sif, "-j", "DROP"],
                          ["iptables", "-w", "-D", "OUTPUT", "-o", sif, "-j", "DROP"]]
            bound = self.args.detect_bound
            res = {"fwd": [], "autossh-tuned": [], "autossh": []}
            for rnd in range(self.args.runs):
                exec_c = ["ip", "netns", "exec", cns]
                self.run(exec_c + [self.fwd, "up", "nt", "-q"], env=env, timeout=60, check=True)
                tuned = self.spawn(exec_c + ["autossh", "-M", "0", "-N", "-F", raw_cfg, "-o", "ServerAliveInterval=5",
                                             "-o", "ServerAliveCountMax=3", "-o", "ExitOnForwardFailure=yes",
                                             "-L", f"127.0.0.1:{tport}:127.0.0.1:8080", "nsbench"])
                default = self.spawn(exec_c + ["autossh", "-N", "-F", raw_cfg, "-o", "ExitOnForwardFailure=yes",
                                               "-L", f"127.0.0.1:{dport}:127.0.0.1:8080", "nsbench"])
                for port in (tport, dport, fport):
                    if self.run(self.helper("wait-http", "--port", port, "--timeout", 20, ns=cns), timeout=30).returncode:
                        raise CannotMeasure(f"a forward in the client namespace (port {port}) never served the page")
                ssh_of = {}
                for key, proc in (("autossh-tuned", tuned), ("autossh", default)):
                    kids = [p for p in children_map().get(proc.pid, []) if comm(p) == "ssh"]
                    if not kids:
                        raise CannotMeasure(f"{key}: no ssh child found under autossh pid {proc.pid}")
                    ssh_of[key] = kids[0]
                time.sleep(random.uniform(0.5, 1.5))  # a random phase against the keepalive timers
                for argv in drop:
                    self.run(["ip", "netns", "exec", sns] + argv, check=True)
                t0 = time.perf_counter()
                found = {}
                while time.perf_counter() - t0 < bound and len(found) < 3:
                    now = time.perf_counter() - t0
                    for key, pid in ssh_of.items():
                        if key not in found and not alive(pid):
                            found[key] = now
                    if "fwd" not in found:
                        p = self.run([self.fwd, "status", "--json"], env=env, timeout=10)
                        try:
                            state = next((r["state"] for r in json.loads(p.stdout) if r["name"] == "nt"), None)
                        except ValueError:
                            state = None
                        # Only a state read says fwd left `up`; a failed read is no evidence either way.
                        if p.returncode == 0 and isinstance(state, str) and state != "up":
                            found["fwd"] = time.perf_counter() - t0
                    time.sleep(0.02)
                for argv in undrop:
                    self.run(["ip", "netns", "exec", sns] + argv)
                for key in res:
                    res[key].append(found.get(key))
                self.say(f"  round {rnd + 1}: " + ", ".join(f"{k} {fmt_s(v) if v is not None else f'> {bound:g} s'}" for k, v in
                                                            ((k, found.get(k)) for k in res)))
                for proc in (tuned, default):
                    self.kill_pids([proc.pid] + descendants(proc.pid))
                self.run(exec_c + [self.fwd, "down", "--all"], env=env, timeout=30)
        finally:
            if env:
                self.fwd_stop(env, ns=cns)
            kids = children_map()
            started = [p for p in self.children if p.pid not in procs_before and p.poll() is None]
            self.kill_pids([p for p in self.marked() if p not in procs_before] +
                           [d for p in started for d in [p.pid] + descendants(p.pid, kids)])
            for ns in (cns, sns):
                subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
                self.namespaces.remove(ns)

        def med(xs):
            seen = [x for x in xs if x is not None]
            # An undetected loss counts as "more than the bound"; the median is over all rounds.
            if len(seen) * 2 <= len(xs):
                return None
            return median([x if x is not None else float("inf") for x in xs])
        f = med(res["fwd"])
        for key, label in (("autossh-tuned", "autossh -M 0, ServerAlive 5×3"), ("autossh", "autossh defaults")):
            b = med(res[key])
            self.row(f"4. Detection of a silent loss (DROP in the server's namespace) → fwd leaves `up` / ssh child exits (vs {label})",
                     fmt_s(f) if f is not None else f"> {bound:g} s",
                     fmt_s(b) if b is not None else f"> {bound:g} s (not noticed)",
                     f"{f / b:.2f}×" if f is not None and b is not None else "—",
                     "≤ 3 s", "yes" if f is not None and f <= 3 else "no")
        self.detail(f"### 4. Detection of a silent loss\n\nClient namespace (fwd, autossh) and server namespace (sshd, "
                    "target) joined by a veth pair, 198.18.0.2 ↔ 198.18.0.1; all traffic on the server's veth "
                    f"dropped with {'nft' if use_nft else 'iptables'} at a random phase; each round bounded at "
                    f"{bound:g} s. fwd runs with its defaults (alive_interval 1, alive_count 2).\n")
        for key, xs in res.items():
            self.detail(f"{key} rounds (s): " + ", ".join(f"{x:.2f}" if x is not None else f">{bound:g}" for x in xs) + "  ")
        self.detail("")

    # -- 5. throughput -------------------------------------------------------------------------------------------

    def address_change(self):
        """8. The client's address is replaced under a live tunnel (Wi-Fi to Ethernet, a new DHCP lease): a new
        address is added, the old one deleted; time from the deletion until the page loads through the tunnel again.
        fwd (rtnetlink) beside autossh -M 0 with ServerAlive 5×3 and AUTOSSH_GATETIME=0, both through the same change."""
        if os.geteuid() != 0:
            self.skipped.append("8. Address change → page: needs root (network namespaces); skipped")
            self.row("8. Address change → page", "skipped (needs root)", "—", "—", "≤ 0.5 s", "—")
            return
        for tool in ("ip", "autossh"):
            if not shutil.which(tool):
                raise CannotMeasure(f"{tool} is not installed")
        tag = f"{random.randrange(16 ** 4):04x}"
        cns, sns = f"fwdb{tag}c", f"fwdb{tag}s"
        cif, sif = f"fwdb{tag}c0", f"fwdb{tag}s0"
        for ns in (cns, sns):
            self.run(["ip", "netns", "add", ns], check=True)
            self.namespaces.append(ns)
        procs_before = set(self.marked()) | {p.pid for p in self.children}
        env = None
        bound = self.args.detect_bound
        addresses = ["198.18.0.2", "198.18.0.3"]
        res = {"fwd": [], "autossh-tuned": []}
        try:
            d, user_cfg, raw_cfg = self.namespace_lab(cns, sns, cif, sif, addresses[0], "ns-addr", promote=True)
            fport, tport = 18090, 18091
            config = os.path.join(d, "fwd.toml")
            self.write_fwd_config(config, [("na", "nsbench", f"127.0.0.1:{fport}:127.0.0.1:8080", "http")])
            env = self.fwd_env("ns-addr", config, user_cfg)
            exec_c = ["ip", "netns", "exec", cns]
            self.run(exec_c + [self.fwd, "up", "na", "-q"], env=env, timeout=60, check=True)
            for rnd in range(self.args.runs):
                old, new = addresses[rnd % 2], addresses[(rnd + 1) % 2]
                # AUTOSSH_GATETIME=0: a connection younger than 30 s that drops would otherwise make autossh give up.
                tuned = self.spawn(exec_c + ["autossh", "-M", "0", "-N", "-F", raw_cfg, "-o", "ServerAliveInterval=5",
                                             "-o", "ServerAliveCountMax=3", "-o", "ExitOnForwardFailure=yes",
                                             "-L", f"127.0.0.1:{tport}:127.0.0.1:8080", "nsbench"],
                                   extra_env={"AUTOSSH_GATETIME": "0"})
                for port in (tport, fport):
                    if self.run(self.helper("wait-http", "--port", port, "--timeout", 20, ns=cns), timeout=30).returncode:
                        raise CannotMeasure(f"a forward in the client namespace (port {port}) never served the page")
                # fwd learns a new master's path just after it connects; both tunnels have been up a while.
                time.sleep(random.uniform(1.0, 2.0))
                self.run(["ip", "-n", cns, "addr", "add", f"{new}/24", "dev", cif], check=True)
                time.sleep(0.2)  # the new address is usable before the old one goes
                # One waiter per tunnel, started (and past python's start-up) before the change; each polls from the
                # "go" on and prints perf_counter() at the first page (CLOCK_MONOTONIC: comparable across processes).
                waiters = {key: self.spawn(self.helper("wait-http", "--port", port, "--timeout", bound, "--go-on-stdin", ns=cns),
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                           for key, port in (("fwd", fport), ("autossh-tuned", tport))}
                for key, w in waiters.items():
                    if w.stdout.readline().strip() != b"ready":
                        raise CannotMeasure(f"the {key} waiter did not start")
                t0 = time.perf_counter()  # before `ip addr del` runs: the change happens during the call
                self.run(["ip", "-n", cns, "addr", "del", f"{old}/24", "dev", cif], check=True)
                for w in waiters.values():
                    w.stdin.write(b"go\n")
                    w.stdin.flush()
                found = {}
                for key, w in waiters.items():
                    line = w.stdout.readline().strip()
                    w.wait()
                    found[key] = float(line) - t0 if w.returncode == 0 and line else None
                for key in res:
                    res[key].append(found.get(key))
                self.say(f"  round {rnd + 1} ({old} → {new}): " + ", ".join(
                    f"{k} {fmt_s(found.get(k)) if found.get(k) is not None else f'> {bound:g} s'}" for k in res))
                self.kill_pids([tuned.pid] + descendants(tuned.pid))
            restarts = self.run(exec_c + [self.fwd, "status", "--json"], env=env, timeout=10)
            try:
                fwd_restarts = next((r.get("restarts") for r in json.loads(restarts.stdout) if r["name"] == "na"), None)
            except ValueError:
                fwd_restarts = None
        finally:
            if env:
                self.fwd_stop(env, ns=cns)
            kids = children_map()
            started = [p for p in self.children if p.pid not in procs_before and p.poll() is None]
            self.kill_pids([p for p in self.marked() if p not in procs_before] +
                           [d for p in started for d in [p.pid] + descendants(p.pid, kids)])
            for ns in (cns, sns):
                subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
                self.namespaces.remove(ns)

        def med(xs):
            seen = [x for x in xs if x is not None]
            if len(seen) * 2 <= len(xs):
                return None
            return median([x if x is not None else float("inf") for x in xs])
        f, b = med(res["fwd"]), med(res["autossh-tuned"])
        self.row("8. Address change → page (new address added, old one deleted; vs autossh -M 0, ServerAlive 5×3)",
                 fmt_s(f) if f is not None else f"> {bound:g} s",
                 fmt_s(b) if b is not None else f"> {bound:g} s",
                 f"{f / b:.3f}×" if f is not None and b is not None else "—",
                 "≤ 0.5 s", "yes" if f is not None and f <= 0.5 else "no")
        self.detail("### 8. Address change → page\n\nClient namespace (fwd, autossh) and server namespace (sshd, target) "
                    "joined by a veth pair; each round adds a new client address (198.18.0.2 ↔ 198.18.0.3, "
                    "promote_secondaries on), waits 0.2 s, deletes the old one and times, from the deletion, until an "
                    "HTTP GET through each tunnel answers again (one `wait-http` helper per tunnel in the client namespace, started "
                    "before the change and told to start polling right after it, every "
                    f"{POLL * 1000:g} ms; t0 is taken before `ip addr del` runs). fwd runs with its defaults and hears the change through rtnetlink; autossh -M 0 "
                    "with ServerAlive 5×3 and AUTOSSH_GATETIME=0 waits for ServerAlive. fwd's master restarts over "
                    f"all rounds (from `fwd status`): {fwd_restarts}.\n")
        for key, xs in res.items():
            self.detail(f"{key} rounds (s): " + ", ".join(f"{x:.3f}" if x is not None else f">{bound:g}" for x in xs) + "  ")

    def throughput(self):
        nbytes = self.args.mbytes * 1_000_000
        src = self.ports.take()
        self.start_server("serve-source", "--port", src, "--bytes", nbytes)
        config = os.path.join(self.dir, "throughput.toml")
        fport, rport = self.ports.take(), self.ports.take()
        self.write_fwd_config(config, [("bulk", "bench0", f"127.0.0.1:{fport}:127.0.0.1:{src}", "none")])
        env = self.fwd_env("throughput", config, self.user_ssh_config)
        self.run([self.fwd, "up", "bulk", "-q"], env=env, timeout=60, check=True)
        rspec = f"127.0.0.1:{rport}:127.0.0.1:{src}"
        self.run(["ssh", "-F", self.raw_ssh_config, "-f", "-N", "-o", "ExitOnForwardFailure=yes", "-L", rspec, "bench0"],
                 timeout=30, check=True)
        owner = listener_owner(fport)
        sup = self.supervisor_pid(env)
        cpu0 = proc_stat(sup)[2] if sup else None
        rates = {"fwd": [], "raw": []}
        pairs = max(self.args.runs, 9)  # one transfer swings ±10 % on 2 shared cores: more pairs, paired ratios
        try:
            for i in range(pairs + 1):
                for who in (["fwd", "raw"] if i % 2 == 0 else ["raw", "fwd"]):
                    port = fport if who == "fwd" else rport
                    got, secs = self.pull(port, nbytes)
                    if got != nbytes:
                        raise CannotMeasure(f"{who}: received {got} of {nbytes} bytes")
                    if i:
                        rates[who].append(nbytes / secs / 1e6)
        finally:
            cpu1 = proc_stat(sup)[2] if sup else None
            self.kill_pids(self.raw_ssh_pids(rspec))
            self.fwd_stop(env)
        f, r = median(rates["fwd"]), median(rates["raw"])
        # Each fwd transfer is paired with the raw one next to it, so drift in the machine's load cancels out.
        ratio = median([a / b for a, b in zip(rates["fwd"], rates["raw"])])
        self.row(f"5. Throughput through a local forward ({self.args.mbytes} MB per run, {pairs} pairs)",
                 f"{f:.0f} MB/s", f"{r:.0f} MB/s", f"{ratio:.2f}× (median of paired runs)", "≥ 0.97× raw",
                 "yes" if ratio >= 0.97 else "no")
        self.detail("### 5. Throughput\n")
        self.detail(f"fwd runs (MB/s): {', '.join(f'{x:.0f}' for x in rates['fwd'])}  ")
        self.detail(f"raw `ssh -L` runs (MB/s): {', '.join(f'{x:.0f}' for x in rates['raw'])}  ")
        if owner:
            self.detail(f"fwd's forward port 127.0.0.1:{fport} is held by `{owner[1]}` (pid {owner[0]}: fwd's "
                        f"ControlMaster), not by fwd: the bytes go client → ssh → sshd → target, no fwd process in between.  ")
        if cpu0 is not None and cpu1 is not None:
            self.detail(f"fwd's supervisor used {(cpu1 - cpu0) / CLK_TCK * 1000:.0f} ms of CPU while "
                        f"{2 * (pairs + 1) * self.args.mbytes} MB went through the two tunnels.\n")

    def pull(self, port, nbytes):
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        got = 0
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            while True:
                n = s.recv_into(view)
                if n == 0:
                    break
                got += n
        return got, time.perf_counter() - t0

    # -- 6. footprint, 7. CLI latency ----------------------------------------------------------------------------

    def footprint(self):
        autossh = shutil.which("autossh")
        cases = [(20, 1), (20, 10), (100, 1), (100, 10)]
        cli_details = []
        for n, h in cases:
            ports = [self.ports.take() for _ in range(n)]
            hosts = [self.hosts[i % h] for i in range(n)]
            # fwd
            config = os.path.join(self.dir, f"footprint-{n}-{h}.toml")
            names = [f"f{i:03d}" for i in range(n)]
            self.write_fwd_config(config, [(names[i], hosts[i], f"127.0.0.1:{ports[i]}:127.0.0.1:{self.http_port}", "http")
                                           for i in range(n)], groups={"all": names})
            env = self.fwd_env(f"footprint-{n}-{h}", config, self.user_ssh_config)
            try:
                t0 = time.perf_counter()
                self.run([self.fwd, "up", "all", "-q", "--timeout", "120"], env=env, timeout=180, check=True)
                up_time = time.perf_counter() - t0
                for port in ports:
                    if wait_page(port, 10) is None:
                        raise CannotMeasure(f"fwd {n}×{h}: port {port} does not serve the page")
                time.sleep(2)
                sup = self.supervisor_pid(env)
                if not sup:
                    raise CannotMeasure("cannot find fwd's supervisor process")
                fwd_fp = self.tree_footprint([sup])
                idle = None
                if (n, h) == (20, 1):
                    idle = self.idle_cpu(sup)
                if (n, h) == (100, 1):
                    cli_details = self.cli_latency(env, n)
            finally:
                self.fwd_stop(env)
            # autossh per forward, one ssh per forward
            base = {}
            for who in ("autossh", "ssh"):
                if who == "autossh" and not autossh:
                    raise CannotMeasure("autossh is not installed (apt-get install autossh)")
                procs = []
                try:
                    for i in range(n):
                        port = self.ports.take()
                        spec = f"127.0.0.1:{port}:127.0.0.1:{self.http_port}"
                        argv = (["autossh", "-M", "0", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
                                if who == "autossh" else ["ssh"]) + \
                               ["-N", "-F", self.raw_ssh_config, "-o", "ExitOnForwardFailure=yes", "-L", spec, hosts[i]]
                        procs.append((self.spawn(argv), port))
                        if i % 10 == 9:  # ten handshakes at a time: 2 cores
                            for _, pt in procs[-10:]:
                                if wait_page(pt, 30) is None:
                                    raise CannotMeasure(f"{who} {n}×{h}: port {pt} never served the page")
                    for _, pt in procs:
                        if wait_page(pt, 30) is None:
                            raise CannotMeasure(f"{who} {n}×{h}: port {pt} never served the page")
                    time.sleep(1)
                    base[who] = self.tree_footprint([p.pid for p, _ in procs])
                finally:
                    pids = [p.pid for p, _ in procs]
                    kids = children_map()
                    self.kill_pids(pids + [d for p in pids for d in descendants(p, kids)])
            a, s = base["autossh"], base["ssh"]
            goal = "≤ 25 MB (fwd)" if (n, h) == (20, 1) else "—"
            met = ("yes" if fwd_fp["rss"] <= 25 * 1024 else "no") if (n, h) == (20, 1) else "—"
            self.row(f"6. Footprint, {n} forwards on {h} host{'s' if h > 1 else ''}: processes / total RSS "
                     "(fwd: supervisor + masters; baselines: autossh -M 0 per forward; one `ssh -N -L` per forward)",
                     f"{fwd_fp['procs']} / {fwd_fp['rss'] / 1024:.1f} MB",
                     f"autossh {a['procs']} / {a['rss'] / 1024:.1f} MB; ssh {s['procs']} / {s['rss'] / 1024:.1f} MB",
                     f"{fwd_fp['rss'] / a['rss']:.2f}× autossh, {fwd_fp['rss'] / s['rss']:.2f}× ssh", goal, met)
            if idle is not None:
                self.row("6b. Supervisor idle CPU over "
                         f"{self.args.idle_seconds:g} s, 20 tunnels up, http probes every 2 s",
                         f"{idle['sup']:.2f} % of a core", f"masters: {idle['masters']:.2f} %", "—", "≤ 1 %",
                         "yes" if idle["sup"] <= 1 else "no")
            self.detail(f"### 6. Footprint, {n} forwards on {h} host{'s' if h > 1 else ''}\n")
            self.detail(f"`fwd up` of all {n} took {up_time:.2f} s. (PSS splits a shared page among the processes "
                        "mapping it, so it depends on what else runs on the machine; private = pages no other "
                        "process maps.)  ")
            for label, fp in (("fwd", fwd_fp), ("autossh per forward", a), ("ssh per forward", s)):
                self.detail(f"{label}: {fp['procs']} processes, VmRSS {fp['rss'] / 1024:.1f} MB "
                            f"(RssAnon {fp['anon'] / 1024:.1f} MB, RssFile {fp['file'] / 1024:.1f} MB; "
                            f"PSS {fp['pss'] / 1024:.1f} MB, private {fp['uss'] / 1024:.1f} MB); "
                            f"{fp['by_comm']}  ")
            if idle is not None and idle["ws"]:
                (srss, sref), ms = idle["ws"]["sup"], idle["ws"]["masters"]
                self.detail(f"Working set over the {self.args.idle_seconds:g} s idle window (pages referenced after "
                            "`clear_refs`; an upper bound, as a shared page another process used counts too): "
                            f"supervisor {sref / 1024:.1f} of the {srss / 1024:.1f} MB resident at the window's end; "
                            f"master{'s' if len(ms) != 1 else ''} {sum(r for _, r in ms) / 1024:.1f} "
                            f"of {sum(r for r, _ in ms) / 1024:.1f} MB. The rest is resident but unused while idle: "
                            "mostly code pages of the binary that ran at start-up or that the kernel mapped around "
                            "the pages that did (fault-around).  ")
            self.detail("")
        self.details += cli_details

    def tree_footprint(self, roots):
        kids = children_map()
        pids = []
        for r in roots:
            pids += [r] + descendants(r, kids)
        rss = anon = file = pss = uss = 0
        by = {}
        for pid in pids:
            v = rss_kb(pid)
            p_, u_ = smaps_rollup_kb(pid)
            pss += p_
            uss += u_
            rss += v.get("VmRSS", 0)
            anon += v.get("RssAnon", 0)
            file += v.get("RssFile", 0) + v.get("RssShmem", 0)
            c = comm(pid)
            cnt, kb = by.get(c, (0, 0))
            by[c] = (cnt + 1, kb + v.get("VmRSS", 0))
        text = ", ".join(f"{c} ×{cnt} = {kb / 1024:.1f} MB" for c, (cnt, kb) in sorted(by.items()))
        return {"procs": len(pids), "rss": rss, "anon": anon, "file": file, "pss": pss, "uss": uss, "by_comm": text}

    def idle_cpu(self, sup):
        masters = [p for p in children_map().get(sup, []) if comm(p) == "ssh"]
        secs = self.args.idle_seconds
        # The same window also gives the working set: the resident pages each process used during it.
        cleared = all(clear_refs(p) for p in [sup] + masters)
        s0 = proc_stat(sup)[2]
        m0 = sum(proc_stat(p)[2] for p in masters)
        self.say(f"  measuring the supervisor's idle CPU for {secs:g} s")
        time.sleep(secs)
        s1 = proc_stat(sup)[2]
        m1 = sum((proc_stat(p) or (0, 0, 0))[2] for p in masters)
        ws = {"sup": working_set_kb(sup), "masters": [working_set_kb(p) for p in masters]} if cleared else None
        return {"sup": (s1 - s0) / CLK_TCK / secs * 100, "masters": (m1 - m0) / CLK_TCK / secs * 100, "ws": ws}

    def cli_latency(self, env, n):
        def timed(argv, count=20, e=None):
            for _ in range(3):
                self.run(argv, env=e or env)
            xs = []
            for _ in range(count):
                t0 = time.perf_counter()
                p = self.run(argv, env=e or env)
                xs.append(time.perf_counter() - t0)
                if p.returncode:
                    raise CannotMeasure(f"`{' '.join(argv[1:])}` exited {p.returncode}")
            return median(xs), xs
        floor, _ = timed(["/bin/true"])
        status, sx = timed([self.fwd, "status"])
        status_json, _ = timed([self.fwd, "status", "--json"])
        # What bash runs on `fwd down <TAB>`: ArgumentParser's completion callback, which fwd answers from the
        # config and a read-only peek at the state database (tunnels that are up first).
        callback = [self.fwd, "---completion", "down", "--", "positional@0", "2", "0", "fwd", "down", ""]
        offered = self.run(callback, env=env).stdout.decode(errors="replace").split()
        if len(offered) < n:
            raise CannotMeasure(f"the completion callback offered {len(offered)} names, not {n}")
        completion, cx = timed(callback)
        self.row(f"7. CLI latency: `fwd status` with {n} tunnels up", fmt_ms(status), f"spawn floor {fmt_ms(floor)}",
                 "—", "≤ 30 ms", "yes" if status <= 0.030 else "no")
        self.row(f"7b. CLI latency: `fwd status --json`, {n} tunnels", fmt_ms(status_json), f"spawn floor {fmt_ms(floor)}",
                 "—", "≤ 30 ms", "yes" if status_json <= 0.030 else "no")
        self.row(f"7c. CLI latency: completion callback for `fwd down <TAB>` ({n} tunnels offered)",
                 fmt_ms(completion), f"spawn floor {fmt_ms(floor)}", "—", "≤ 30 ms", "yes" if completion <= 0.030 else "no")
        return [f"### 7. CLI latency ({n} tunnels configured and up, 20 runs after 3 warm-ups)\n",
                f"`fwd status` (ms): {self.ms_list(sx)}  ", f"completion callback (ms): {self.ms_list(cx)}\n"]

    # -- report --------------------------------------------------------------------------------------------------

    def machine(self):
        def out(argv):
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
                return (p.stdout + p.stderr).strip().splitlines()[0]
            except Exception as e:
                return f"({e})"
        mem = next((l.split()[1] for l in (read("/proc/meminfo") or "").splitlines() if l.startswith("MemTotal")), "0")
        cpu = next((l.split(":", 1)[1].strip() for l in (read("/proc/cpuinfo") or "").splitlines()
                    if l.startswith("model name")), "?")
        return [("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
                ("nproc", str(os.cpu_count())), ("CPU", cpu), ("RAM", f"{int(mem) / 1024 / 1024:.1f} GiB"),
                ("kernel", os.uname().release), ("OS", out(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"])),
                ("ssh -V", out(["ssh", "-V"])), ("autossh", out(["/usr/lib/autossh/autossh", "-V"]) if
                                                   os.path.exists("/usr/lib/autossh/autossh") else out(["autossh", "-V"])),
                ("swift --version", out(["swift", "--version"])), ("runs per measure", str(self.args.runs)),
                ("load average (1 min) at start → end", f"{self.load_start} → {os.getloadavg()[0]:.2f} "
                 "(the machine is shared; timed measures alternate fwd and its baselines run by run)")]

    def report(self):
        header = ["Measure", "fwd", "Baseline", "Ratio", "Goal", "Met?"]

        def order(row):
            # "6." rows, then "6b.", then "7." …: measure 7 runs inside measure 6.
            num = "".join(c for c in row[0].split(".")[0] if c.isdigit())
            return int(num or 0), row[0].split(".")[0].lstrip("0123456789")
        self.rows.sort(key=order)
        table = [header] + [list(r) for r in self.rows]
        widths = [min(70, max(len(r[i]) for r in table)) for i in range(len(header))]
        print()
        for r in table:
            print("  ".join(c.ljust(w) if len(c) <= w else c for c, w in zip(r, widths)))
        md = ["# fwd benchmarks", "",
              "Measured by `scripts/bench` (issue 6): fwd beside raw OpenSSH and autossh in the same run of the "
              f"script, each timing the median of ≥ {self.args.runs} runs (footprint and idle CPU are one sample "
              "each). Re-run with `scripts/bench`; timings are never asserted in tests.", "", "## Machine", "", "| | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in self.machine()]
        md += ["", "## Results", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        if self.failures or self.skipped:
            md += ["", "## Not measured", ""] + [f"- {x}" for x in self.failures + self.skipped]
        md += ["", "## Details", ""] + self.details
        md += ["", "Load average (1 min) before → after each measure: " + "; ".join(self.loads) + "."]
        notes = os.path.join(HERE, "bench-notes.md")
        if os.path.exists(notes):
            md += ["", read(notes).strip()]
        with open(self.args.out, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"\nwrote {self.args.out}")
        for x in self.failures:
            print(f"could not measure: {x}", file=sys.stderr)
        for x in self.skipped:
            print(f"skipped: {x}", file=sys.stderr)


def main():
    if len(sys.argv) > 1 and sys.argv[1] in HELPERS:
        return helper_main(sys.argv[1:])
    p = argparse.ArgumentParser(description="Benchmark fwd beside raw OpenSSH and autossh; writes BENCHMARKS.md.")
    p.add_argument("--fwd", default=os.path.join(HERE, "..", ".build", "release", "fwd"), help="the fwd binary")
    p.add_argument("--runs", type=int, default=5, help="runs per measure (≥ 5 for the committed figures)")
    p.add_argument("--only", default="1,2,3,4,5,6,8,9,10",
                   help="comma-separated measures: 1 cold up, 2 warm add, 3 recovery, 4 detection, 5 throughput, "
                        "6 footprint (7, CLI latency, runs inside 6), 8 address change -> page, 9 cold up per forward "
                        "type, 10 idle CPU with local, dynamic and remote tunnels")
    p.add_argument("--out", default=os.path.join(HERE, "..", "BENCHMARKS.md"))
    p.add_argument("--mbytes", type=int, default=256, help="MB per throughput run")
    p.add_argument("--idle-seconds", type=float, default=60)
    p.add_argument("--down-seconds", type=float, default=2, help="how long sshd stays down in the recovery measure")
    p.add_argument("--detect-bound", type=float, default=30, help="seconds to wait for a silent loss to be noticed")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) for inspection")
    args = p.parse_args()
    if not os.access(args.fwd, os.X_OK):
        print(f"no fwd binary at {args.fwd}: run `swift build -c release --static-swift-stdlib` (scripts/bench does)", file=sys.stderr)
        return 2
    for tool in ("ssh", "ssh-keygen", SSHD):
        if not shutil.which(tool):
            print(f"{tool} is not installed: scripts/setup installs OpenSSH", file=sys.stderr)
            return 1
    args.out = os.path.abspath(args.out)
    only = set(args.only.split(","))
    bench = Bench(args)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        bench.setup_lab()
        steps = [("1", "1. cold up", bench.cold_up), ("2", "2. warm add", bench.warm_add),
                 ("3", "3. recovery after an sshd crash", bench.recovery),
                 ("4", "4. detection of a silent loss (network namespaces)", bench.detection),
                 ("5", "5. throughput", bench.throughput), ("6", "6. footprint (and 7. CLI latency)", bench.footprint),
                 ("8", "8. address change → page (network namespaces)", bench.address_change),
                 ("9", "9. cold up per forward type", bench.cold_up_types),
                 ("10", "10. idle CPU, 20 local + 20 dynamic + 20 remote", bench.idle_cpu_types)]
        for key, title, fn in steps:
            if key in only:
                bench.measure(title, fn)
        bench.report()
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        bench.failures.append("interrupted")
    except CannotMeasure as e:
        print(f"could not set up the lab: {e}", file=sys.stderr)
        bench.failures.append(str(e))
    finally:
        bench.cleanup()
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
