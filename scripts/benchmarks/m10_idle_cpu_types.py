"""10. Idle CPU with every forward type (issue 12): the supervisor with 20 local + 20 dynamic + 20 remote tunnels,
with default probes and with probe = "none", and its thread count."""
import json
import os
import time

from .common import CannotMeasure
from .m06_footprint import idle_cpu

KEY = "10"
TITLE = "10. idle CPU, 20 local + 20 dynamic + 20 remote"


def run(lab, report):
    n = 20
    tunnels = []
    for kind in ("local", "dynamic", "remote"):
        for i in range(n):
            tunnels.append((f"{kind[0]}{i:02d}", "bench0", kind, lab.forward_spec(kind, lab.ports.take())))
    results = {}
    # The same 60 tunnels with probe = "none" separate what probing costs from the supervisor's own rounds.
    for probe in (None, "none"):
        config = os.path.join(lab.dir, f"idle-types-{probe or 'default'}.toml")
        lab.write_typed_config(config, tunnels, probe)
        with open(config, "a") as f:
            f.write("[groups]\nall = [" + ", ".join(json.dumps(t[0]) for t in tunnels) + "]\n")
        env = lab.fwd_env(f"idle-types-{probe or 'default'}", config, lab.user_ssh_config)
        try:
            lab.run([lab.fwd, "up", "all", "-q", "--timeout", "120"], env=env, timeout=180, check=True)
            p = lab.run([lab.fwd, "status", "--json"], env=env, timeout=30, check=True)
            states = [t["state"] for t in json.loads(p.stdout)]
            if states.count("up") != len(tunnels):
                raise CannotMeasure(f"not every tunnel is up: {sorted(set(states))}")
            time.sleep(2)
            sup = lab.supervisor_pid(env)
            if not sup:
                raise CannotMeasure("cannot find fwd's supervisor process")
            threads = len(os.listdir(f"/proc/{sup}/task"))
            idle = idle_cpu(lab, sup)
            idle["threads"] = (threads, len(os.listdir(f"/proc/{sup}/task")))
            results[probe] = idle
        finally:
            lab.fwd_stop(env)
    idle, none = results[None], results["none"]
    report.row(f"10. Supervisor idle CPU over {lab.args.idle_seconds:g} s, 20 local + 20 dynamic + 20 remote tunnels "
               "on one host, default probes every 2 s", f"{idle['sup']:.2f} % of a core",
               f"same tunnels with probe = \"none\": {none['sup']:.2f} %; master: {idle['masters']:.2f} % "
               f"(none: {none['masters']:.2f} %)", "—", "≤ 1 %", "yes" if idle["sup"] <= 1 else "no")
    report.detail("### 10. Idle CPU, every forward type\n")
    report.detail("60 tunnels, default probes (tcp through the master, SOCKS handshake plus the master's transport "
                  "round trip at most every 30 s, remote through the master's control socket). Supervisor threads "
                  f"{idle['threads'][0]} before and {idle['threads'][1]} after the window (probes share one poll "
                  f"thread; no ssh process is started per probe). With probe = \"none\" the supervisor still runs "
                  f"its rounds, but a round whose results equal the last ones written writes nothing: {none['sup']:.2f} % of a core.  \n")
