"""7. CLI latency: `fwd status`, `fwd status --json` and the completion callback of `fwd down <TAB>` with 100
tunnels up. No key of its own: measure 6 runs it while its 100 tunnels are up."""
import time

from .common import CannotMeasure, fmt_ms, median, ms_list


def run(lab, report, env, n):
    def timed(argv, count=20, e=None):
        for _ in range(3):
            lab.run(argv, env=e or env)
        xs = []
        for _ in range(count):
            t0 = time.perf_counter()
            p = lab.run(argv, env=e or env)
            xs.append(time.perf_counter() - t0)
            if p.returncode:
                raise CannotMeasure(f"`{' '.join(argv[1:])}` exited {p.returncode}")
        return median(xs), xs
    floor, _ = timed(["/bin/true"])
    status, sx = timed([lab.fwd, "status"])
    status_json, _ = timed([lab.fwd, "status", "--json"])
    # What bash runs on `fwd down <TAB>`: ArgumentParser's completion callback, which fwd answers from the
    # config and a read-only peek at the state database (tunnels that are up first).
    callback = [lab.fwd, "---completion", "down", "--", "positional@0", "2", "0", "fwd", "down", ""]
    offered = lab.run(callback, env=env).stdout.decode(errors="replace").split()
    if len(offered) < n:
        raise CannotMeasure(f"the completion callback offered {len(offered)} names, not {n}")
    completion, cx = timed(callback)
    report.row(f"7. CLI latency: `fwd status` with {n} tunnels up", fmt_ms(status), f"spawn floor {fmt_ms(floor)}",
               "—", "≤ 30 ms", "yes" if status <= 0.030 else "no")
    report.row(f"7b. CLI latency: `fwd status --json`, {n} tunnels", fmt_ms(status_json), f"spawn floor {fmt_ms(floor)}",
               "—", "≤ 30 ms", "yes" if status_json <= 0.030 else "no")
    report.row(f"7c. CLI latency: completion callback for `fwd down <TAB>` ({n} tunnels offered)",
               fmt_ms(completion), f"spawn floor {fmt_ms(floor)}", "—", "≤ 30 ms", "yes" if completion <= 0.030 else "no")
    return [f"### 7. CLI latency ({n} tunnels configured and up, 20 runs after 3 warm-ups)\n",
            f"`fwd status` (ms): {ms_list(sx)}  ", f"completion callback (ms): {ms_list(cx)}\n"]
