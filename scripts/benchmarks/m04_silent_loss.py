"""4. Detection of a silent loss (root only): every packet on the server's veth dropped; until fwd leaves `up`
and until autossh's ssh child exits."""
import json
import os
import random
import shutil
import time

from .common import CannotMeasure, fmt_s, median_of_rounds
from .procfs import alive, children_map, comm, descendants

KEY = "4"
TITLE = "4. detection of a silent loss (network namespaces)"


def run(lab, report):
    if os.geteuid() != 0:
        report.skipped.append("4. Detection of a silent loss: needs root (network namespaces, iptables); skipped")
        report.row("4. Detection of a silent loss", "skipped (needs root)", "—", "—", "≤ 3 s", "—")
        return
    for tool in ("ip", "autossh"):
        if not shutil.which(tool):
            raise CannotMeasure(f"{tool} is not installed")
    use_nft = not shutil.which("iptables")
    if use_nft and not shutil.which("nft"):
        raise CannotMeasure("neither iptables nor nft is installed")
    cns, sns, cif, sif = lab.add_namespace_pair()
    procs_before = lab.started()
    env = None
    try:
        d, user_cfg, raw_cfg = lab.namespace_lab(cns, sns, cif, sif, "198.18.0.2", "ns")
        fport, tport, dport = 18080, 18081, 18082
        config = os.path.join(d, "fwd.toml")
        lab.write_fwd_config(config, [("nt", "nsbench", f"127.0.0.1:{fport}:127.0.0.1:8080", "http")])
        env = lab.fwd_env("ns", config, user_cfg)
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
        bound = lab.args.detect_bound
        res = {"fwd": [], "autossh-tuned": [], "autossh": []}
        for rnd in range(lab.args.runs):
            exec_c = ["ip", "netns", "exec", cns]
            lab.run(exec_c + [lab.fwd, "up", "nt", "-q"], env=env, timeout=60, check=True)
            tuned = lab.spawn(exec_c + ["autossh", "-M", "0", "-N", "-F", raw_cfg, "-o", "ServerAliveInterval=5",
                                        "-o", "ServerAliveCountMax=3", "-o", "ExitOnForwardFailure=yes",
                                        "-L", f"127.0.0.1:{tport}:127.0.0.1:8080", "nsbench"])
            default = lab.spawn(exec_c + ["autossh", "-N", "-F", raw_cfg, "-o", "ExitOnForwardFailure=yes",
                                          "-L", f"127.0.0.1:{dport}:127.0.0.1:8080", "nsbench"])
            for port in (tport, dport, fport):
                if lab.run(lab.helper("wait-http", "--port", port, "--timeout", 20, ns=cns), timeout=30).returncode:
                    raise CannotMeasure(f"a forward in the client namespace (port {port}) never served the page")
            ssh_of = {}
            for key, proc in (("autossh-tuned", tuned), ("autossh", default)):
                kids = [p for p in children_map().get(proc.pid, []) if comm(p) == "ssh"]
                if not kids:
                    raise CannotMeasure(f"{key}: no ssh child found under autossh pid {proc.pid}")
                ssh_of[key] = kids[0]
            time.sleep(random.uniform(0.5, 1.5))  # a random phase against the keepalive timers
            for argv in drop:
                lab.run(["ip", "netns", "exec", sns] + argv, check=True)
            t0 = time.perf_counter()
            found = {}
            while time.perf_counter() - t0 < bound and len(found) < 3:
                now = time.perf_counter() - t0
                for key, pid in ssh_of.items():
                    if key not in found and not alive(pid):
                        found[key] = now
                if "fwd" not in found:
                    p = lab.run([lab.fwd, "status", "--json"], env=env, timeout=10)
                    try:
                        state = next((r["state"] for r in json.loads(p.stdout) if r["name"] == "nt"), None)
                    except ValueError:
                        state = None
                    # Only a state read says fwd left `up`; a failed read is no evidence either way.
                    if p.returncode == 0 and isinstance(state, str) and state != "up":
                        found["fwd"] = time.perf_counter() - t0
                time.sleep(0.02)
            for argv in undrop:
                lab.run(["ip", "netns", "exec", sns] + argv)
            for key in res:
                res[key].append(found.get(key))
            lab.say(f"  round {rnd + 1}: " + ", ".join(f"{k} {fmt_s(v) if v is not None else f'> {bound:g} s'}" for k, v in
                                                       ((k, found.get(k)) for k in res)))
            for proc in (tuned, default):
                lab.kill_pids([proc.pid] + descendants(proc.pid))
            lab.run(exec_c + [lab.fwd, "down", "--all"], env=env, timeout=30)
    finally:
        lab.end_namespace_pair(cns, sns, env, procs_before)

    f = median_of_rounds(res["fwd"])
    for key, label in (("autossh-tuned", "autossh -M 0, ServerAlive 5×3"), ("autossh", "autossh defaults")):
        b = median_of_rounds(res[key])
        report.row(f"4. Detection of a silent loss (DROP in the server's namespace) → fwd leaves `up` / ssh child exits (vs {label})",
                   fmt_s(f) if f is not None else f"> {bound:g} s",
                   fmt_s(b) if b is not None else f"> {bound:g} s (not noticed)",
                   f"{f / b:.2f}×" if f is not None and b is not None else "—",
                   "≤ 3 s", "yes" if f is not None and f <= 3 else "no")
    report.detail(f"### 4. Detection of a silent loss\n\nClient namespace (fwd, autossh) and server namespace (sshd, "
                  "target) joined by a veth pair, 198.18.0.2 ↔ 198.18.0.1; all traffic on the server's veth "
                  f"dropped with {'nft' if use_nft else 'iptables'} at a random phase; each round bounded at "
                  f"{bound:g} s. fwd runs with its defaults (alive_interval 1, alive_count 2).\n")
    for key, xs in res.items():
        report.detail(f"{key} rounds (s): " + ", ".join(f"{x:.2f}" if x is not None else f">{bound:g}" for x in xs) + "  ")
    report.detail("")
