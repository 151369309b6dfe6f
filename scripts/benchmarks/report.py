"""The results: the table rows and the markdown details the measures add, what could not be measured, the load
average around each measure; printed as a table and written as BENCHMARKS.md (with scripts/bench-notes.md)."""
import datetime
import os
import subprocess
import sys

from .procfs import read

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Report:
    def __init__(self, args):
        self.args = args
        self.rows = []        # (measure, fwd, baseline, ratio, goal, met)
        self.details = []     # markdown lines
        self.failures = []    # what could not be measured
        self.skipped = []
        self.load_start = f"{os.getloadavg()[0]:.2f}"
        self.loads = []

    def row(self, measure, fwd, baseline, ratio, goal, met):
        self.rows.append((measure, fwd, baseline, ratio, goal, met))

    def detail(self, text):
        self.details.append(text)

    def machine(self):
        def out(argv):
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
                return (p.stdout + p.stderr).strip().splitlines()[0]
            except Exception as e:
                return f"({e})"
        mem = next((l.split()[1] for l in (read("/proc/meminfo") or "").splitlines() if l.startswith("MemTotal")), "0")
        cpu = next((l.split(":", 1)[1].strip() for l in (read("/proc/cpuinfo") or "").splitlines()
                    if l.startswith("model name")), "?")
        return [("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
                ("nproc", str(os.cpu_count())), ("CPU", cpu), ("RAM", f"{int(mem) / 1024 / 1024:.1f} GiB"),
                ("kernel", os.uname().release), ("OS", out(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"])),
                ("ssh -V", out(["ssh", "-V"])), ("autossh", out(["/usr/lib/autossh/autossh", "-V"]) if
                                                 os.path.exists("/usr/lib/autossh/autossh") else out(["autossh", "-V"])),
                ("swift --version", out(["swift", "--version"])), ("runs per measure", str(self.args.runs)),
                ("load average (1 min) at start → end", f"{self.load_start} → {os.getloadavg()[0]:.2f} "
                 "(the machine is shared; timed measures alternate fwd and its baselines run by run)")]

    def write(self):
        header = ["Measure", "fwd", "Baseline", "Ratio", "Goal", "Met?"]

        def order(row):
            # "6." rows, then "6b.", then "7." …: measure 7 runs inside measure 6.
            num = "".join(c for c in row[0].split(".")[0] if c.isdigit())
            return int(num or 0), row[0].split(".")[0].lstrip("0123456789")
        self.rows.sort(key=order)
        table = [header] + [list(r) for r in self.rows]
        widths = [min(70, max(len(r[i]) for r in table)) for i in range(len(header))]
        print()
        for r in table:
            print("  ".join(c.ljust(w) if len(c) <= w else c for c, w in zip(r, widths)))
        md = ["# fwd benchmarks", "",
              "Measured by `scripts/bench` (issue 6): fwd beside raw OpenSSH and autossh in the same run of the "
              f"script, each timing the median of ≥ {self.args.runs} runs (footprint and idle CPU are one sample "
              "each). Re-run with `scripts/bench`; timings are never asserted in tests.", "", "## Machine", "", "| | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in self.machine()]
        md += ["", "## Results", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        if self.failures or self.skipped:
            md += ["", "## Not measured", ""] + [f"- {x}" for x in self.failures + self.skipped]
        md += ["", "## Details", ""] + self.details
        md += ["", "Load average (1 min) before → after each measure: " + "; ".join(self.loads) + "."]
        notes = os.path.join(SCRIPTS, "bench-notes.md")
        if os.path.exists(notes):
            md += ["", read(notes).strip()]
        with open(self.args.out, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"\nwrote {self.args.out}")
        for x in self.failures:
            print(f"could not measure: {x}", file=sys.stderr)
        for x in self.skipped:
            print(f"skipped: {x}", file=sys.stderr)
