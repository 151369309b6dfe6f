"""The lab: a private sshd on 127.0.0.1 (ten ports, ten host aliases), the HTTP target, as root a client and a
server network namespace joined by a veth pair, the ssh_config and fwd config files, and every process a run
starts (each carries FWD_BENCH_MARK=<the run's directory>, so the cleanup ends exactly those)."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .common import CannotMeasure
from .helpers import http_get, socks_get, wait_page
from .procfs import alive, all_pids, children_map, cmdline, comm, descendants, environ_has, read, tcp_listening

SSHD = "/usr/sbin/sshd"
# The helper processes run the package itself by its path (`python3 …/scripts/benchmarks serve-http …`), so they
# need neither a working directory nor PYTHONPATH, also under `ip netns exec`.
PACKAGE = os.path.dirname(os.path.abspath(__file__))


def fnv1a32(text):
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


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


class Lab:
    """The private sshd, its host aliases and ssh_config files, the HTTP target, the network namespaces and every
    process a run starts, and the cleanup that ends them."""

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
        self.sshd = None
        self.log = None

    # -- output --------------------------------------------------------------------------------------------------

    def say(self, text):
        print(f"==> {text}", flush=True)

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
        argv = [self.python, PACKAGE, mode] + [str(a) for a in args]
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

    def add_namespace_pair(self):
        """A new client and server network namespace (the cleanup removes them if end_namespace_pair does not);
        returns their names and those of the veth pair namespace_lab joins them with."""
        tag = f"{random.randrange(16 ** 4):04x}"
        cns, sns = f"fwdb{tag}c", f"fwdb{tag}s"
        cif, sif = f"fwdb{tag}c0", f"fwdb{tag}s0"
        for ns in (cns, sns):
            self.run(["ip", "netns", "add", ns], check=True)
            self.namespaces.append(ns)
        return cns, sns, cif, sif

    def started(self):
        """The processes this run has started so far: the ones end_namespace_pair leaves running."""
        return set(self.marked()) | {p.pid for p in self.children}

    def end_namespace_pair(self, cns, sns, env, before):
        """Stops fwd in the client namespace (when `env` is set), ends every process started since `before` (from
        started()) and removes both namespaces."""
        if env:
            self.fwd_stop(env, ns=cns)
        kids = children_map()
        started = [p for p in self.children if p.pid not in before and p.poll() is None]
        self.kill_pids([p for p in self.marked() if p not in before] +
                       [d for p in started for d in [p.pid] + descendants(p.pid, kids)])
        for ns in (cns, sns):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
            self.namespaces.remove(ns)

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

    def raw_ssh_pids(self, needle):
        return [p for p in self.marked() if any(needle in a for a in cmdline(p)) and comm(p) == "ssh"]
