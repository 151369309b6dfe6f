"""1. Cold up: `fwd up` (starting the supervisor) until the first HTTP response through the forward, beside
`ssh -f -N -L`; and, from the supervisor's event log, where fwd's time goes (measure 9 uses the same table)."""
import datetime
import os
import time

from .common import CannotMeasure, fmt_ms, median, ms_list
from .helpers import wait_page

KEY = "1"
TITLE = "1. cold up"


def timed_cold_up(lab, env, wait, what, label=""):
    """Runs `fwd up t1 -q` and then wait() (a perf_counter() time or None). Returns (wall clock at the start,
    start, `fwd up`'s return, wait()'s time); raises CannotMeasure when either failed."""
    wall0 = time.time()
    t0 = time.perf_counter()
    p = lab.run([lab.fwd, "up", "t1", "-q"], env=env, timeout=60)
    t1 = time.perf_counter()
    ok = wait()
    if p.returncode != 0 or ok is None:
        raise CannotMeasure(f"{label}`fwd up` exited {p.returncode} / {what if ok else 'never ' + what}: "
                            f"{p.stderr.decode(errors='replace').strip()[-400:]}")
    return wall0, t0, t1, ok


def run(lab, report):
    runs = lab.args.runs
    fwd_t, raw_t, fwd_cmd_t, raw_cmd_t, phases = [], [], [], [], []
    config = os.path.join(lab.dir, "cold.toml")
    for i in range(runs + 1):  # run 0 warms the page cache for both and is not counted
        order = ["fwd", "raw"] if i % 2 == 0 else ["raw", "fwd"]
        for who in order:
            port = lab.ports.take()
            spec = f"127.0.0.1:{port}:127.0.0.1:{lab.http_port}"
            if who == "fwd":
                lab.write_fwd_config(config, [("t1", "bench0", spec, "http")])
                env = lab.fwd_env(f"cold{i}", config, lab.user_ssh_config)
                wall0, t0, t1, ok = timed_cold_up(lab, env, lambda: wait_page(port, 30), "page loaded")
                if i:
                    fwd_t.append(ok - t0)
                    fwd_cmd_t.append(t1 - t0)
                    phases.append(cold_phases(lab, env, wall0, t1 - t0, ok - t0))
                lab.fwd_stop(env)
            else:
                t0 = time.perf_counter()
                p = lab.run(["ssh", "-F", lab.raw_ssh_config, "-f", "-N", "-o", "ExitOnForwardFailure=yes",
                             "-L", spec, "bench0"], timeout=60)
                t1 = time.perf_counter()
                ok = wait_page(port, 30)
                if p.returncode != 0 or ok is None:
                    raise CannotMeasure(f"`ssh -f -N -L` exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                if i:
                    raw_t.append(ok - t0)
                    raw_cmd_t.append(t1 - t0)
                lab.kill_pids(lab.raw_ssh_pids(spec))
    f, r = median(fwd_t), median(raw_t)
    report.row("1. Cold up → first HTTP response (`fwd up` incl. starting the supervisor vs `ssh -f -N -L`)",
               fmt_ms(f), fmt_ms(r), f"{f / r:.2f}×", "≤ 1.1× raw", "yes" if f <= 1.1 * r else "no")
    report.detail("### 1. Cold up\n")
    report.detail(f"fwd runs (ms): {ms_list(fwd_t)}; of which the `fwd up` command itself: {ms_list(fwd_cmd_t)}  ")
    report.detail(f"raw runs (ms): {ms_list(raw_t)}; of which `ssh -f` itself: {ms_list(raw_cmd_t)}  ")
    phase_table(report, phases)


def phase_table(report, phases):
    if not phases:
        return
    keys = phases[0].keys()
    med = {k: median([p[k] for p in phases if p.get(k) is not None]) for k in keys}
    report.detail("\nWhere fwd's time goes (medians, ms from the start of `fwd up`, from the supervisor's event log):\n")
    report.detail("| point | ms |\n|---|---|")
    for k in keys:
        if med[k] is not None:
            report.detail(f"| {k} | {med[k] * 1000:.0f} |")
    report.detail("")


def cold_phases(lab, env, wall0, cmd, page, usable="page loaded"):
    """Reads the supervisor's event log (times to the ms) and returns offsets from the start of `fwd up`."""
    out = {}
    p = lab.run([lab.fwd, "logs", "--lines", "100"], env=env, timeout=10)
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
