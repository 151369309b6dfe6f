"""9. Cold up per forward type (issue 12): local, dynamic and remote, each until `fwd up` returned and the
forward is usable, beside raw `ssh -f -N -L/-D/-R`."""
import os
import time

from .common import CannotMeasure, fmt_ms, median, ms_list
from .helpers import wait_usable
from .m01_cold_up import cold_phases, phase_table, timed_cold_up

KEY = "9"
TITLE = "9. cold up per forward type"


def run(lab, report):
    """No supervisor and no master before each `fwd up`. The row's figure is the usual cold up: fwd has run
    before, so its state directory exists (one per forward type, made in the uncounted run 0). The detail
    also gives the very first run, whose `fwd up` creates the state directory and the database."""
    runs = lab.args.runs
    config = os.path.join(lab.dir, "cold-types.toml")
    flag = {"local": "-L", "dynamic": "-D", "remote": "-R"}
    for kind in ("local", "dynamic", "remote"):
        times = {"fwd": [], "first": [], "raw": []}
        fwd_cmd_t, phases = [], []
        order = ["fwd", "raw", "first"]
        for i in range(runs + 1):  # run 0 warms caches (and makes the reused state directory) and is not counted
            for who in order[i % 3:] + order[:i % 3]:
                port = lab.ports.take()
                spec = lab.forward_spec(kind, port)
                usable = lab.forward_usable(kind, port)
                if who in ("fwd", "first"):
                    lab.write_typed_config(config, [("t1", "bench0", kind, spec)])
                    env = lab.fwd_env(f"cold-{kind}" if who == "fwd" else f"cold-{kind}-first{i}", config, lab.user_ssh_config)
                    wall0, t0, t1, ok = timed_cold_up(lab, env, lambda: wait_usable(usable, 30), "usable", f"{kind}: ")
                    if i:
                        times[who].append(max(ok, t1) - t0)
                        if who == "fwd":
                            fwd_cmd_t.append(t1 - t0)
                            phases.append(cold_phases(lab, env, wall0, t1 - t0, ok - t0, "forward usable"))
                    lab.fwd_stop(env)
                else:
                    t0 = time.perf_counter()
                    p = lab.run(["ssh", "-F", lab.raw_ssh_config, "-f", "-N", "-o", "ExitOnForwardFailure=yes",
                                 flag[kind], spec, "bench0"], timeout=60)
                    ok = wait_usable(usable, 30)
                    if p.returncode != 0 or ok is None:
                        raise CannotMeasure(f"{kind}: `ssh -f -N {flag[kind]}` exited {p.returncode}: "
                                            f"{p.stderr.decode(errors='replace')[-300:]}")
                    if i:
                        times["raw"].append(ok - t0)
                    lab.kill_pids(lab.raw_ssh_pids(spec))
        f, r, c, first = median(times["fwd"]), median(times["raw"]), median(fwd_cmd_t), median(times["first"])
        report.row(f"9. Cold up, {kind} forward ({flag[kind]}, default probe): `fwd up` returned and the forward "
                   f"usable vs raw `ssh -f -N {flag[kind]}` usable", fmt_ms(f), fmt_ms(r), f"{f / r:.2f}×", "≤ 1.2× raw",
                   "yes" if f <= 1.2 * r else "no")
        report.detail(f"### 9. Cold up, {kind} forward\n")
        report.detail(f"fwd (ms, until both `fwd up` returned and the forward was usable; no supervisor, no master, "
                      f"state directory from an earlier run): {ms_list(times['fwd'])}; `fwd up` alone: "
                      f"{ms_list(fwd_cmd_t)} (median {fmt_ms(c)})  ")
        report.detail(f"fwd's very first run (a new state directory and database each time): "
                      f"{ms_list(times['first'])} (median {fmt_ms(first)}, {first / r:.2f}× raw)  ")
        report.detail(f"raw ssh (ms, until usable): {ms_list(times['raw'])}  ")
        phase_table(report, phases)
