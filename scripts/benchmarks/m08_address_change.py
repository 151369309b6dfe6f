"""8. Address change → page (root only): a new client address added, the old one deleted; until the page loads
through the tunnel again, beside autossh -M 0 with ServerAlive 5×3."""
import json
import os
import random
import shutil
import subprocess
import time

from .common import CannotMeasure, fmt_s, median_of_rounds
from .helpers import POLL
from .procfs import descendants

KEY = "8"
TITLE = "8. address change → page (network namespaces)"


def run(lab, report):
    """8. The client's address is replaced under a live tunnel (Wi-Fi to Ethernet, a new DHCP lease): a new
    address is added, the old one deleted; time from the deletion until the page loads through the tunnel again.
    fwd (rtnetlink) beside autossh -M 0 with ServerAlive 5×3 and AUTOSSH_GATETIME=0, both through the same change."""
    if os.geteuid() != 0:
        report.skipped.append("8. Address change → page: needs root (network namespaces); skipped")
        report.row("8. Address change → page", "skipped (needs root)", "—", "—", "≤ 0.5 s", "—")
        return
    for tool in ("ip", "autossh"):
        if not shutil.which(tool):
            raise CannotMeasure(f"{tool} is not installed")
    cns, sns, cif, sif = lab.add_namespace_pair()
    procs_before = lab.started()
    env = None
    bound = lab.args.detect_bound
    addresses = ["198.18.0.2", "198.18.0.3"]
    res = {"fwd": [], "autossh-tuned": []}
    try:
        d, user_cfg, raw_cfg = lab.namespace_lab(cns, sns, cif, sif, addresses[0], "ns-addr", promote=True)
        fport, tport = 18090, 18091
        config = os.path.join(d, "fwd.toml")
        lab.write_fwd_config(config, [("na", "nsbench", f"127.0.0.1:{fport}:127.0.0.1:8080", "http")])
        env = lab.fwd_env("ns-addr", config, user_cfg)
        exec_c = ["ip", "netns", "exec", cns]
        lab.run(exec_c + [lab.fwd, "up", "na", "-q"], env=env, timeout=60, check=True)
        for rnd in range(lab.args.runs):
            old, new = addresses[rnd % 2], addresses[(rnd + 1) % 2]
            # AUTOSSH_GATETIME=0: a connection younger than 30 s that drops would otherwise make autossh give up.
            tuned = lab.spawn(exec_c + ["autossh", "-M", "0", "-N", "-F", raw_cfg, "-o", "ServerAliveInterval=5",
                                        "-o", "ServerAliveCountMax=3", "-o", "ExitOnForwardFailure=yes",
                                        "-L", f"127.0.0.1:{tport}:127.0.0.1:8080", "nsbench"],
                              extra_env={"AUTOSSH_GATETIME": "0"})
            for port in (tport, fport):
                if lab.run(lab.helper("wait-http", "--port", port, "--timeout", 20, ns=cns), timeout=30).returncode:
                    raise CannotMeasure(f"a forward in the client namespace (port {port}) never served the page")
            # fwd learns a new master's path just after it connects; both tunnels have been up a while.
            time.sleep(random.uniform(1.0, 2.0))
            lab.run(["ip", "-n", cns, "addr", "add", f"{new}/24", "dev", cif], check=True)
            time.sleep(0.2)  # the new address is usable before the old one goes
            # One waiter per tunnel, started (and past python's start-up) before the change; each polls from the
            # "go" on and prints perf_counter() at the first page (CLOCK_MONOTONIC: comparable across processes).
            waiters = {key: lab.spawn(lab.helper("wait-http", "--port", port, "--timeout", bound, "--go-on-stdin", ns=cns),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                       for key, port in (("fwd", fport), ("autossh-tuned", tport))}
            for key, w in waiters.items():
                if w.stdout.readline().strip() != b"ready":
                    raise CannotMeasure(f"the {key} waiter did not start")
            t0 = time.perf_counter()  # before `ip addr del` runs: the change happens during the call
            lab.run(["ip", "-n", cns, "addr", "del", f"{old}/24", "dev", cif], check=True)
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
            lab.say(f"  round {rnd + 1} ({old} → {new}): " + ", ".join(
                f"{k} {fmt_s(found.get(k)) if found.get(k) is not None else f'> {bound:g} s'}" for k in res))
            lab.kill_pids([tuned.pid] + descendants(tuned.pid))
        restarts = lab.run(exec_c + [lab.fwd, "status", "--json"], env=env, timeout=10)
        try:
            fwd_restarts = next((r.get("restarts") for r in json.loads(restarts.stdout) if r["name"] == "na"), None)
        except ValueError:
            fwd_restarts = None
    finally:
        lab.end_namespace_pair(cns, sns, env, procs_before)

    f, b = median_of_rounds(res["fwd"]), median_of_rounds(res["autossh-tuned"])
    report.row("8. Address change → page (new address added, old one deleted; vs autossh -M 0, ServerAlive 5×3)",
               fmt_s(f) if f is not None else f"> {bound:g} s",
               fmt_s(b) if b is not None else f"> {bound:g} s",
               f"{f / b:.3f}×" if f is not None and b is not None else "—",
               "≤ 0.5 s", "yes" if f is not None and f <= 0.5 else "no")
    report.detail("### 8. Address change → page\n\nClient namespace (fwd, autossh) and server namespace (sshd, target) "
                  "joined by a veth pair; each round adds a new client address (198.18.0.2 ↔ 198.18.0.3, "
                  "promote_secondaries on), waits 0.2 s, deletes the old one and times, from the deletion, until an "
                  "HTTP GET through each tunnel answers again (one `wait-http` helper per tunnel in the client namespace, started "
                  "before the change and told to start polling right after it, every "
                  f"{POLL * 1000:g} ms; t0 is taken before `ip addr del` runs). fwd runs with its defaults and hears the change through rtnetlink; autossh -M 0 "
                  "with ServerAlive 5×3 and AUTOSSH_GATETIME=0 waits for ServerAlive. fwd's master restarts over "
                  f"all rounds (from `fwd status`): {fwd_restarts}.\n")
    for key, xs in res.items():
        report.detail(f"{key} rounds (s): " + ", ".join(f"{x:.3f}" if x is not None else f">{bound:g}" for x in xs) + "  ")
