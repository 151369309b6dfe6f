"""2. Warm add: `fwd up t2` on a host whose master is up until the first HTTP response, beside `ssh -O forward`;
2b with the default tcp probe, 2c beside 20 tunnels on the same host."""
import os
import time

from .common import CannotMeasure, fmt_ms, median, ms_list
from .helpers import wait_page

KEY = "2"
TITLE = "2. warm add"


def run(lab, report):
    runs = lab.args.runs
    config = os.path.join(lab.dir, "warm.toml")
    base = lab.ports.take()
    tunnels = [("t1", "bench0", f"127.0.0.1:{base}:127.0.0.1:{lab.http_port}", "http")]
    add_ports = {}
    for i in range(runs + 1):
        for probe in ("http", "tcp", "busy"):
            port = lab.ports.take()
            name = f"t2-{probe}-{i}"
            add_ports[name] = port
            tunnels.append((name, "bench0", f"127.0.0.1:{port}:127.0.0.1:{lab.http_port}",
                            "http" if probe == "busy" else probe))
    # 20 tunnels with the default probe, brought up on the same host for 2c
    crowd = [f"crowd-{i:02d}" for i in range(20)]
    tunnels += [(n, "bench0", f"127.0.0.1:{lab.ports.take()}:127.0.0.1:{lab.http_port}", "tcp") for n in crowd]
    lab.write_fwd_config(config, tunnels, groups={"crowd": crowd})
    env = lab.fwd_env("warm", config, lab.user_ssh_config)
    lab.run([lab.fwd, "up", "t1", "-q"], env=env, timeout=60, check=True)
    sock = os.path.join(lab.dir, "raw-master.sock")
    lab.run(["ssh", "-F", lab.raw_ssh_config, "-f", "-N", "-M", "-S", sock, "-o", "ControlPersist=no", "bench0"],
            timeout=30, check=True)
    fwd_t, fwd_cmd, tcp_t, raw_t, raw_cmd, getfwd, busy_t = [], [], [], [], [], [], []
    try:
        for i in range(runs + 1):
            for who in (["fwd", "raw"] if i % 2 == 0 else ["raw", "fwd"]):
                if who == "fwd":
                    name = f"t2-http-{i}"
                    t0 = time.perf_counter()
                    p = lab.run([lab.fwd, "up", name, "-q"], env=env, timeout=60)
                    t1 = time.perf_counter()
                    ok = wait_page(add_ports[name], 10)
                    if p.returncode or ok is None:
                        raise CannotMeasure(f"`fwd up {name}` exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                    if i:
                        fwd_t.append(ok - t0)
                        fwd_cmd.append(t1 - t0)
                    lab.run([lab.fwd, "down", name], env=env, timeout=30)
                else:
                    port = lab.ports.take()
                    spec = f"127.0.0.1:{port}:127.0.0.1:{lab.http_port}"
                    argv = ["ssh", "-F", "none", "-S", sock, "-O", "forward", "-L", spec, "fwd-mux"]
                    t0 = time.perf_counter()
                    p = lab.run(argv, timeout=30)
                    t1 = time.perf_counter()
                    ok = wait_page(port, 10)
                    if p.returncode or ok is None:
                        raise CannotMeasure(f"`ssh -O forward` exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
                    if i:
                        raw_t.append(ok - t0)
                        raw_cmd.append(t1 - t0)
                    lab.run(["ssh", "-F", "none", "-S", sock, "-O", "cancel", "-L", spec, "fwd-mux"], timeout=30)
            # the default probe (tcp), for the record: it waits out a 250 ms settle window
            name = f"t2-tcp-{i}"
            t0 = time.perf_counter()
            p = lab.run([lab.fwd, "up", name, "-q"], env=env, timeout=60)
            ok = wait_page(add_ports[name], 10)
            if p.returncode or ok is None:
                raise CannotMeasure(f"`fwd up {name}` (tcp probe) exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
            if i:
                tcp_t.append(ok - t0)
            lab.run([lab.fwd, "down", name], env=env, timeout=30)
        # 2c: the same add on a host that already carries 20 tunnels with the default tcp probe
        lab.run([lab.fwd, "up", "crowd", "-q", "--timeout", "120"], env=env, timeout=180, check=True)
        for i in range(runs + 1):
            name = f"t2-busy-{i}"
            t0 = time.perf_counter()
            p = lab.run([lab.fwd, "up", name, "-q", "--timeout", "60"], env=env, timeout=90)
            ok = wait_page(add_ports[name], 10)
            if p.returncode or ok is None:
                raise CannotMeasure(f"`fwd up {name}` beside 20 tunnels exited {p.returncode}: {p.stderr.decode(errors='replace')[-300:]}")
            if i:
                busy_t.append(ok - t0)
            lab.run([lab.fwd, "down", name], env=env, timeout=60)
        lab.run([lab.fwd, "down", "crowd"], env=env, timeout=60)
        # Reference costs: one `ssh -G` (what a config change costs per host) and the Swift process start,
        # which every `fwd up` pays before its `ssh -O forward`.
        for _ in range(runs):
            t0 = time.perf_counter()
            lab.run(["ssh", "-F", os.path.join(env["FWD_STATE_DIR"], "ssh_config"), "-G", "-T", "bench0"])
            getfwd.append(time.perf_counter() - t0)
        start = []
        for _ in range(runs):
            t0 = time.perf_counter()
            lab.run([lab.fwd, "--help"], env=env)
            start.append(time.perf_counter() - t0)
    finally:
        lab.run(["ssh", "-F", "none", "-S", sock, "-O", "exit", "fwd-mux"], timeout=10)
        lab.fwd_stop(env)
    f, r = median(fwd_t), median(raw_t)
    met = f <= 1.3 * r and f <= 0.050
    report.row("2. Warm add → first HTTP response (`fwd up t2` vs `ssh -O forward`, master up)",
               fmt_ms(f), fmt_ms(r), f"{f / r:.1f}×", "≤ 1.3× raw and ≤ 50 ms", "yes" if met else "no")
    report.row("2b. Warm add with the default `tcp` probe (for the record)", fmt_ms(median(tcp_t)), fmt_ms(r),
               f"{median(tcp_t) / r:.1f}×" if tcp_t else "—", "—", "—")
    report.row("2c. Warm add (probe = http) on a host already carrying 20 tunnels with the default `tcp` probe",
               fmt_ms(median(busy_t)), fmt_ms(r), f"{median(busy_t) / r:.0f}×" if busy_t else "—", "≤ 1.3× raw and ≤ 50 ms",
               "yes" if busy_t and median(busy_t) <= min(0.050, 1.3 * r) else "no")
    report.detail("### 2. Warm add\n")
    report.detail(f"fwd beside 20 tcp-probed tunnels on the same host, runs (ms): {ms_list(busy_t)}  ")
    report.detail(f"fwd (probe = http) runs (ms): {ms_list(fwd_t)}; the command alone: {ms_list(fwd_cmd)}  ")
    report.detail(f"fwd (probe = tcp, the default) runs (ms): {ms_list(tcp_t)}  ")
    report.detail(f"raw `ssh -F none -S SOCK -O forward -L …` runs (ms): {ms_list(raw_t)}; the command alone: {ms_list(raw_cmd)}  ")
    report.detail(f"one `ssh -G` with fwd's config: median {fmt_ms(median(getfwd))}; "
                  f"starting the fwd binary (`fwd --help`): median {fmt_ms(median(start))}\n")
