"""3. Recovery after an sshd crash: sshd listening again until the page loads through the forward, beside autossh
(defaults, monitor via an echo port) and autossh -M 0 with ServerAlive 5×3."""
import os
import shutil
import time

from .common import CannotMeasure, fmt_ms, median, ms_list
from .helpers import POLL, wait_page
from .procfs import descendants

KEY = "3"
TITLE = "3. recovery after an sshd crash"


def run(lab, report):
    autossh = shutil.which("autossh")
    if not autossh:
        raise CannotMeasure("autossh is not installed (apt-get install autossh)")
    runs = lab.args.runs
    config = os.path.join(lab.dir, "recovery.toml")
    results = {"fwd": [], "autossh": [], "autossh-tuned": []}
    down_for = lab.args.down_seconds
    # autossh's default monitor (-M PORT) is a loop: -L PORT on the client and -R PORT on the server. With both
    # on one host the two listeners collide ("remote port forwarding failed"), so here it monitors through an
    # echo port instead (-M PORT:ECHO), its documented alternative; its polling (600 s) and its restart logic,
    # which is what this measures, are the defaults. The namespace measure (4) runs the real loop.
    echo = lab.ports.take()
    lab.start_server("serve-echo", "--port", echo)
    tools = list(results)
    for i in range(runs):
        # Run by run, each tool in turn, starting with a different one each run: a load change on the shared
        # machine then falls on all three alike.
        for who in tools[i % len(tools):] + tools[:i % len(tools)]:
            port = lab.ports.take()
            spec = f"127.0.0.1:{port}:127.0.0.1:{lab.http_port}"
            env = None
            if who == "fwd":
                lab.write_fwd_config(config, [("t1", "bench0", spec, "http")])
                env = lab.fwd_env(f"recovery{i}", config, lab.user_ssh_config)
                lab.run([lab.fwd, "up", "t1", "-q"], env=env, timeout=60, check=True)
                proc = None
            else:
                argv = ["autossh"] + (["-M", "0", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
                                      if who == "autossh-tuned" else ["-M", f"{lab.ports.take()}:{echo}"]) + \
                       ["-N", "-F", lab.raw_ssh_config, "-o", "ExitOnForwardFailure=yes", "-L", spec, "bench0"]
                # A connection younger than AUTOSSH_GATETIME (30 s) that drops makes autossh give up ("ssh exited
                # prematurely"); 0 turns that start gate off, so it restarts as it would after 30 s of uptime.
                proc = lab.spawn(argv, extra_env={"AUTOSSH_GATETIME": "0"})
            if wait_page(port, 30) is None:
                raise CannotMeasure(f"{who}: the page never loaded before the crash")
            time.sleep(1.0)
            lab.crash_sshd()
            time.sleep(down_for)
            t_listen = lab.start_sshd()
            ok = wait_page(port, 30)
            if ok is None:
                raise CannotMeasure(f"{who} did not bring the page back within 30 s of sshd listening again")
            results[who].append(ok - t_listen)
            if proc:
                lab.kill_pids([proc.pid] + descendants(proc.pid))
            else:
                lab.fwd_stop(env)
    f = median(results["fwd"])
    for who, label in (("autossh", "autossh defaults, monitor via echo port"),
                       ("autossh-tuned", "autossh -M 0, ServerAlive 5×3")):
        b = median(results[who])
        report.row(f"3. Recovery after an sshd crash: sshd listening → page loads (vs {label})",
                   fmt_ms(f), fmt_ms(b), f"{f / b:.2f}×", "≤ 0.3 s", "yes" if f <= 0.3 else "no")
    report.detail(f"### 3. Recovery\n\nsshd (listener and every session) SIGKILLed, restarted {down_for:g} s later (autossh runs with "
                  "AUTOSSH_GATETIME=0: otherwise a connection younger than 30 s that drops makes it give up); "
                  "clock starts when its port is in LISTEN (from /proc/net/tcp), stops at the first HTTP response "
                  f"through the forward (polled every {POLL * 1000:.0f} ms).\n")
    for who, xs in results.items():
        report.detail(f"{who} runs (ms): {ms_list(xs)}  ")
    report.detail("")
