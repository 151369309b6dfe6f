"""What the measures read from /proc: process states, trees, memory, listening sockets."""
import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid):
    """(state, ppid, utime+stime ticks) or None."""
    text = read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[11]) + int(fields[12])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def children_map():
    kids = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            kids.setdefault(st[1], []).append(pid)
    return kids


def descendants(pid, kids=None):
    kids = kids if kids is not None else children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def rss_kb(pid):
    text = read(f"/proc/{pid}/status") or ""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            values[key] = int(rest.split()[0])
    return values


def smaps_rollup_kb(pid):
    """Pss and Private (USS) from /proc/PID/smaps_rollup: shared library pages counted once across processes."""
    values = {}
    for line in (read(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Private_Clean", "Private_Dirty"):
            values[key] = int(rest.split()[0])
    return values.get("Pss", 0), values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)


def working_set_kb(pid):
    """(Rss, Referenced) from /proc/PID/smaps_rollup. Read after writing 1 to /proc/PID/clear_refs, Referenced
    counts the resident pages used since then: an upper bound, since a shared page that another process used
    counts too."""
    values = {}
    for line in (read(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Referenced"):
            values[key] = int(rest.split()[0])
    return values.get("Rss", 0), values.get("Referenced", 0)


def clear_refs(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def comm(pid):
    return (read(f"/proc/{pid}/comm") or "?").strip()


def cmdline(pid):
    raw = read(f"/proc/{pid}/cmdline", "rb") or b""
    return [x.decode(errors="replace") for x in raw.split(b"\0") if x]


def environ_has(pid, needle):
    raw = read(f"/proc/{pid}/environ", "rb")
    return raw is not None and needle in raw.split(b"\0")


def tcp_listening(port, hexaddr="0100007F"):
    want = f"{hexaddr}:{port:04X}"
    for line in (read("/proc/net/tcp") or "").splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[1] == want and cols[3] == "0A":
            return True
    return False


def listener_owner(port):
    """(pid, comm) of the process holding the LISTEN socket on 127.0.0.1:port, from /proc."""
    want = f"0100007F:{port:04X}"
    inodes = set()
    for line in (read("/proc/net/tcp") or "").splitlines()[1:]:
        cols = line.split()
        if len(cols) > 9 and cols[1] == want and cols[3] == "0A":
            inodes.add(f"socket:[{cols[9]}]")
    for pid in all_pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid, comm(pid)
                except OSError:
                    pass
        except OSError:
            pass
    return None


def tree_footprint(roots):
    """Processes, memory (kB) and a per-command summary of the trees under `roots`."""
    kids = children_map()
    pids = []
    for r in roots:
        pids += [r] + descendants(r, kids)
    rss = anon = file = pss = uss = 0
    by = {}
    for pid in pids:
        v = rss_kb(pid)
        p_, u_ = smaps_rollup_kb(pid)
        pss += p_
        uss += u_
        rss += v.get("VmRSS", 0)
        anon += v.get("RssAnon", 0)
        file += v.get("RssFile", 0) + v.get("RssShmem", 0)
        c = comm(pid)
        cnt, kb = by.get(c, (0, 0))
        by[c] = (cnt + 1, kb + v.get("VmRSS", 0))
    text = ", ".join(f"{c} ×{cnt} = {kb / 1024:.1f} MB" for c, (cnt, kb) in sorted(by.items()))
    return {"procs": len(pids), "rss": rss, "anon": anon, "file": file, "pss": pss, "uss": uss, "by_comm": text}
