"""Benchmarks fwd beside raw OpenSSH and autossh (issue 6). Run it through `scripts/bench`, which installs what it
needs and builds fwd in release mode first; `python3 -m benchmarks` from scripts/ (or `python3 scripts/benchmarks`)
runs the package itself.

Everything runs against a private sshd on 127.0.0.1 (and, as root, an sshd in a network namespace of its own for
the silent-loss measure). Every process it starts carries FWD_BENCH_MARK=<its temporary directory> in its
environment, and the cleanup ends exactly those processes, removes its namespaces and its directory, on success,
failure or Ctrl-C. Standard library only.

Exit status: 0 when every selected measure was taken (a goal that is missed is a result, not an error; a measure
skipped because it needs root is reported as skipped), 1 when something could not be measured (the output says
what), 2 on bad arguments.

The layout, one module per measure as in swift-nio's Benchmarks/:
- `__main__`: the command line (options, the helper subcommands) and the run of the selected measures;
- `lab`: the private sshd, the network namespaces, ssh_config and fwd config files, the processes it starts;
- `procfs`: what the measures read from /proc;
- `helpers`: the helper processes (`serve-http`, …, which the package runs as `python3 scripts/benchmarks MODE`)
  and the client side of the wait loop every measure shares;
- `common`: medians and formatting;
- `report`: the results table and BENCHMARKS.md;
- `mNN_*`: one module per measure, each with its KEY (the `--only` number), its TITLE and `run(lab, report)`.
"""
