"""6. Footprint: processes and memory of fwd's supervisor and masters beside autossh and ssh per forward, for 20
and 100 forwards on 1 and 10 hosts; 6b, the supervisor's idle CPU (measure 10 uses the same window); 7, CLI
latency, runs inside it with 100 tunnels up."""
import os
import shutil
import time

from . import m07_cli_latency
from .common import CannotMeasure
from .helpers import wait_page
from .procfs import CLK_TCK, children_map, clear_refs, comm, descendants, proc_stat, tree_footprint, working_set_kb

KEY = "6"
TITLE = "6. footprint (and 7. CLI latency)"


def run(lab, report):
    autossh = shutil.which("autossh")
    cases = [(20, 1), (20, 10), (100, 1), (100, 10)]
    cli_details = []
    for n, h in cases:
        ports = [lab.ports.take() for _ in range(n)]
        hosts = [lab.hosts[i % h] for i in range(n)]
        # fwd
        config = os.path.join(lab.dir, f"footprint-{n}-{h}.toml")
        names = [f"f{i:03d}" for i in range(n)]
        lab.write_fwd_config(config, [(names[i], hosts[i], f"127.0.0.1:{ports[i]}:127.0.0.1:{lab.http_port}", "http")
                                      for i in range(n)], groups={"all": names})
        env = lab.fwd_env(f"footprint-{n}-{h}", config, lab.user_ssh_config)
        try:
            t0 = time.perf_counter()
            lab.run([lab.fwd, "up", "all", "-q", "--timeout", "120"], env=env, timeout=180, check=True)
            up_time = time.perf_counter() - t0
            for port in ports:
                if wait_page(port, 10) is None:
                    raise CannotMeasure(f"fwd {n}×{h}: port {port} does not serve the page")
            time.sleep(2)
            sup = lab.supervisor_pid(env)
            if not sup:
                raise CannotMeasure("cannot find fwd's supervisor process")
            fwd_fp = tree_footprint([sup])
            idle = None
            if (n, h) == (20, 1):
                idle = idle_cpu(lab, sup)
            if (n, h) == (100, 1):
                cli_details = m07_cli_latency.run(lab, report, env, n)
        finally:
            lab.fwd_stop(env)
        # autossh per forward, one ssh per forward
        base = {}
        for who in ("autossh", "ssh"):
            if who == "autossh" and not autossh:
                raise CannotMeasure("autossh is not installed (apt-get install autossh)")
            procs = []
            try:
                for i in range(n):
                    port = lab.ports.take()
                    spec = f"127.0.0.1:{port}:127.0.0.1:{lab.http_port}"
                    argv = (["autossh", "-M", "0", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
                            if who == "autossh" else ["ssh"]) + \
                           ["-N", "-F", lab.raw_ssh_config, "-o", "ExitOnForwardFailure=yes", "-L", spec, hosts[i]]
                    procs.append((lab.spawn(argv), port))
                    if i % 10 == 9:  # ten handshakes at a time: 2 cores
                        for _, pt in procs[-10:]:
                            if wait_page(pt, 30) is None:
                                raise CannotMeasure(f"{who} {n}×{h}: port {pt} never served the page")
                for _, pt in procs:
                    if wait_page(pt, 30) is None:
                        raise CannotMeasure(f"{who} {n}×{h}: port {pt} never served the page")
                time.sleep(1)
                base[who] = tree_footprint([p.pid for p, _ in procs])
            finally:
                pids = [p.pid for p, _ in procs]
                kids = children_map()
                lab.kill_pids(pids + [d for p in pids for d in descendants(p, kids)])
        a, s = base["autossh"], base["ssh"]
        goal = "≤ 25 MB (fwd)" if (n, h) == (20, 1) else "—"
        met = ("yes" if fwd_fp["rss"] <= 25 * 1024 else "no") if (n, h) == (20, 1) else "—"
        report.row(f"6. Footprint, {n} forwards on {h} host{'s' if h > 1 else ''}: processes / total RSS "
                   "(fwd: supervisor + masters; baselines: autossh -M 0 per forward; one `ssh -N -L` per forward)",
                   f"{fwd_fp['procs']} / {fwd_fp['rss'] / 1024:.1f} MB",
                   f"autossh {a['procs']} / {a['rss'] / 1024:.1f} MB; ssh {s['procs']} / {s['rss'] / 1024:.1f} MB",
                   f"{fwd_fp['rss'] / a['rss']:.2f}× autossh, {fwd_fp['rss'] / s['rss']:.2f}× ssh", goal, met)
        if idle is not None:
            report.row("6b. Supervisor idle CPU over "
                       f"{lab.args.idle_seconds:g} s, 20 tunnels up, http probes every 2 s",
                       f"{idle['sup']:.2f} % of a core", f"masters: {idle['masters']:.2f} %", "—", "≤ 1 %",
                       "yes" if idle["sup"] <= 1 else "no")
        report.detail(f"### 6. Footprint, {n} forwards on {h} host{'s' if h > 1 else ''}\n")
        report.detail(f"`fwd up` of all {n} took {up_time:.2f} s. (PSS splits a shared page among the processes "
                      "mapping it, so it depends on what else runs on the machine; private = pages no other "
                      "process maps.)  ")
        for label, fp in (("fwd", fwd_fp), ("autossh per forward", a), ("ssh per forward", s)):
            report.detail(f"{label}: {fp['procs']} processes, VmRSS {fp['rss'] / 1024:.1f} MB "
                          f"(RssAnon {fp['anon'] / 1024:.1f} MB, RssFile {fp['file'] / 1024:.1f} MB; "
                          f"PSS {fp['pss'] / 1024:.1f} MB, private {fp['uss'] / 1024:.1f} MB); "
                          f"{fp['by_comm']}  ")
        if idle is not None and idle["ws"]:
            (srss, sref), ms = idle["ws"]["sup"], idle["ws"]["masters"]
            report.detail(f"Working set over the {lab.args.idle_seconds:g} s idle window (pages referenced after "
                          "`clear_refs`; an upper bound, as a shared page another process used counts too): "
                          f"supervisor {sref / 1024:.1f} of the {srss / 1024:.1f} MB resident at the window's end; "
                          f"master{'s' if len(ms) != 1 else ''} {sum(r for _, r in ms) / 1024:.1f} "
                          f"of {sum(r for r, _ in ms) / 1024:.1f} MB. The rest is resident but unused while idle: "
                          "mostly code pages of the binary that ran at start-up or that the kernel mapped around "
                          "the pages that did (fault-around).  ")
        report.detail("")
    report.details += cli_details


def idle_cpu(lab, sup):
    masters = [p for p in children_map().get(sup, []) if comm(p) == "ssh"]
    secs = lab.args.idle_seconds
    # The same window also gives the working set: the resident pages each process used during it.
    cleared = all(clear_refs(p) for p in [sup] + masters)
    s0 = proc_stat(sup)[2]
    m0 = sum(proc_stat(p)[2] for p in masters)
    lab.say(f"  measuring the supervisor's idle CPU for {secs:g} s")
    time.sleep(secs)
    s1 = proc_stat(sup)[2]
    m1 = sum((proc_stat(p) or (0, 0, 0))[2] for p in masters)
    ws = {"sup": working_set_kb(sup), "masters": [working_set_kb(p) for p in masters]} if cleared else None
    return {"sup": (s1 - s0) / CLK_TCK / secs * 100, "masters": (m1 - m0) / CLK_TCK / secs * 100, "ws": ws}
