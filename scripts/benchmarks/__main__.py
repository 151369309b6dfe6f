"""The command line: `python3 -m benchmarks [options]` (from scripts/, or with scripts/ on PYTHONPATH) or
`python3 scripts/benchmarks [options]` runs the selected measures; `… serve-http --port N` and the other HELPERS
run one helper process (the lab starts them that way). See the package's docstring, and `scripts/bench`, which
installs what the measures need and builds fwd first."""
import os
import sys

if __package__ in (None, ""):
    # Run by its path (`python3 scripts/benchmarks`, as the helper processes are): import the package from
    # scripts/, not its modules from the package's own folder, which Python put first on the path.
    _package = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _package:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(_package))

import argparse  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402

from benchmarks import (m01_cold_up, m02_warm_add, m03_recovery, m04_silent_loss, m05_throughput,  # noqa: E402
                        m06_footprint, m08_address_change, m09_cold_up_types, m10_idle_cpu_types)
from benchmarks.common import CannotMeasure  # noqa: E402
from benchmarks.helpers import HELPERS, helper_main  # noqa: E402
from benchmarks.lab import SSHD, Lab  # noqa: E402
from benchmarks.report import SCRIPTS, Report  # noqa: E402

# In the order they run; each has KEY (what --only selects), TITLE and run(lab, report). Measure 7 runs inside 6.
MEASURES = (m01_cold_up, m02_warm_add, m03_recovery, m04_silent_loss, m05_throughput, m06_footprint,
            m08_address_change, m09_cold_up_types, m10_idle_cpu_types)


def measure(lab, report, title, fn):
    lab.say(title)
    before = os.getloadavg()[0]
    try:
        fn()
    except CannotMeasure as e:
        report.failures.append(f"{title}: {e}")
        lab.say(f"could not measure: {e}")
    except subprocess.TimeoutExpired as e:
        report.failures.append(f"{title}: `{' '.join(map(str, e.cmd))}` did not finish within {e.timeout} s")
        lab.say(f"could not measure: {e}")
    except (OSError, ValueError, ZeroDivisionError, TypeError, KeyError, IndexError) as e:
        report.failures.append(f"{title}: {type(e).__name__}: {e}")
        lab.say(f"could not measure: {type(e).__name__}: {e}")
    finally:
        report.loads.append(f"{title}: {before:.1f} → {os.getloadavg()[0]:.1f}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] in HELPERS:
        return helper_main(sys.argv[1:])
    p = argparse.ArgumentParser(prog="scripts/bench",
                                description="Benchmark fwd beside raw OpenSSH and autossh; writes BENCHMARKS.md.")
    p.add_argument("--fwd", default=os.path.join(SCRIPTS, "..", ".build", "release", "fwd"), help="the fwd binary")
    p.add_argument("--runs", type=int, default=5, help="runs per measure (≥ 5 for the committed figures)")
    p.add_argument("--only", default="1,2,3,4,5,6,8,9,10",
                   help="comma-separated measures: 1 cold up, 2 warm add, 3 recovery, 4 detection, 5 throughput, "
                        "6 footprint (7, CLI latency, runs inside 6), 8 address change -> page, 9 cold up per forward "
                        "type, 10 idle CPU with local, dynamic and remote tunnels")
    p.add_argument("--out", default=os.path.join(SCRIPTS, "..", "BENCHMARKS.md"))
    p.add_argument("--mbytes", type=int, default=256, help="MB per throughput run")
    p.add_argument("--idle-seconds", type=float, default=60)
    p.add_argument("--down-seconds", type=float, default=2, help="how long sshd stays down in the recovery measure")
    p.add_argument("--detect-bound", type=float, default=30, help="seconds to wait for a silent loss to be noticed")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) for inspection")
    args = p.parse_args()
    if not os.access(args.fwd, os.X_OK):
        print(f"no fwd binary at {args.fwd}: run `swift build -c release --static-swift-stdlib` (scripts/bench does)", file=sys.stderr)
        return 2
    for tool in ("ssh", "ssh-keygen", SSHD):
        if not shutil.which(tool):
            print(f"{tool} is not installed: scripts/setup installs OpenSSH", file=sys.stderr)
            return 1
    args.out = os.path.abspath(args.out)
    only = set(args.only.split(","))
    lab = Lab(args)
    report = Report(args)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        lab.setup_lab()
        for m in MEASURES:
            if m.KEY in only:
                measure(lab, report, m.TITLE, lambda: m.run(lab, report))
        report.write()
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        report.failures.append("interrupted")
    except CannotMeasure as e:
        print(f"could not set up the lab: {e}", file=sys.stderr)
        report.failures.append(str(e))
    finally:
        lab.cleanup()
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
