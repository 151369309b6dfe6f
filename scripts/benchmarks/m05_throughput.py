"""5. Throughput through a local forward, beside `ssh -L`, in paired runs."""
import os
import socket
import time

from .common import CannotMeasure, median
from .procfs import CLK_TCK, listener_owner, proc_stat

KEY = "5"
TITLE = "5. throughput"


def run(lab, report):
    nbytes = lab.args.mbytes * 1_000_000
    src = lab.ports.take()
    lab.start_server("serve-source", "--port", src, "--bytes", nbytes)
    config = os.path.join(lab.dir, "throughput.toml")
    fport, rport = lab.ports.take(), lab.ports.take()
    lab.write_fwd_config(config, [("bulk", "bench0", f"127.0.0.1:{fport}:127.0.0.1:{src}", "none")])
    env = lab.fwd_env("throughput", config, lab.user_ssh_config)
    lab.run([lab.fwd, "up", "bulk", "-q"], env=env, timeout=60, check=True)
    rspec = f"127.0.0.1:{rport}:127.0.0.1:{src}"
    lab.run(["ssh", "-F", lab.raw_ssh_config, "-f", "-N", "-o", "ExitOnForwardFailure=yes", "-L", rspec, "bench0"],
            timeout=30, check=True)
    owner = listener_owner(fport)
    sup = lab.supervisor_pid(env)
    cpu0 = proc_stat(sup)[2] if sup else None
    rates = {"fwd": [], "raw": []}
    pairs = max(lab.args.runs, 9)  # one transfer swings ±10 % on 2 shared cores: more pairs, paired ratios
    try:
        for i in range(pairs + 1):
            for who in (["fwd", "raw"] if i % 2 == 0 else ["raw", "fwd"]):
                port = fport if who == "fwd" else rport
                got, secs = pull(port, nbytes)
                if got != nbytes:
                    raise CannotMeasure(f"{who}: received {got} of {nbytes} bytes")
                if i:
                    rates[who].append(nbytes / secs / 1e6)
    finally:
        cpu1 = proc_stat(sup)[2] if sup else None
        lab.kill_pids(lab.raw_ssh_pids(rspec))
        lab.fwd_stop(env)
    f, r = median(rates["fwd"]), median(rates["raw"])
    # Each fwd transfer is paired with the raw one next to it, so drift in the machine's load cancels out.
    ratio = median([a / b for a, b in zip(rates["fwd"], rates["raw"])])
    report.row(f"5. Throughput through a local forward ({lab.args.mbytes} MB per run, {pairs} pairs)",
               f"{f:.0f} MB/s", f"{r:.0f} MB/s", f"{ratio:.2f}× (median of paired runs)", "≥ 0.97× raw",
               "yes" if ratio >= 0.97 else "no")
    report.detail("### 5. Throughput\n")
    report.detail(f"fwd runs (MB/s): {', '.join(f'{x:.0f}' for x in rates['fwd'])}  ")
    report.detail(f"raw `ssh -L` runs (MB/s): {', '.join(f'{x:.0f}' for x in rates['raw'])}  ")
    if owner:
        report.detail(f"fwd's forward port 127.0.0.1:{fport} is held by `{owner[1]}` (pid {owner[0]}: fwd's "
                      f"ControlMaster), not by fwd: the bytes go client → ssh → sshd → target, no fwd process in between.  ")
    if cpu0 is not None and cpu1 is not None:
        report.detail(f"fwd's supervisor used {(cpu1 - cpu0) / CLK_TCK * 1000:.0f} ms of CPU while "
                      f"{2 * (pairs + 1) * lab.args.mbytes} MB went through the two tunnels.\n")


def pull(port, nbytes):
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
