#!/usr/bin/env python3
"""Run a benchmark and say how busy the rest of the machine was meanwhile.

    bench/loadwatch.py [--limit PCT] -- COMMAND [ARG...]

The command runs as a child; its output passes through unchanged. At the end one JSON line
goes to standard error: the wall time, the CPU the benchmark used (the child and every
process it waited for: its rusage), the CPU every other process on the machine used over the
same interval (the machine's busy time from /proc/stat minus the benchmark's), as a percentage
of one core, and "contention": true when that exceeds --limit (default 15 % of a core, the
bar of a quiet machine). A run marked so is reported as taken under contention, not quoted.

Processes the benchmark starts without waiting for (a server it kills and does not reap)
count as "others": the scripts here reap what they start. A server that detaches itself (the
PostgreSQL of bench/pg_lib.sh: pg_ctl puts it in a session of its own) is counted by the
script: it appends the server's CPU seconds, one number per line, to the file named in
$STORMBELL_LOADWATCH_EXTRA before stopping it, and they count as the benchmark's.
"""
import json
import tempfile
import os
import sys
import time


def busy_ticks():
    """Jiffies the whole machine spent not idle, and the number of cores."""
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    fields = [int(x) for x in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is in user.
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    cores = sum(1 for l in lines if l.startswith("cpu") and l[3:4].isdigit())
    return total - idle, cores


def main(argv):
    limit = 15.0
    if argv[:1] == ["--limit"]:
        limit, argv = float(argv[1]), argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1:]
    hz = os.sysconf("SC_CLK_TCK")
    extra = tempfile.NamedTemporaryFile(prefix="loadwatch-", delete=False)
    extra.close()
    os.environ["STORMBELL_LOADWATCH_EXTRA"] = extra.name
    busy0, cores = busy_ticks()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    busy1, _ = busy_ticks()
    machine = (busy1 - busy0) / hz
    with open(extra.name) as f:
        detached = sum(float(l) for l in f if l.strip())
    os.unlink(extra.name)
    ours = usage.ru_utime + usage.ru_stime + detached
    others = max(0.0, machine - ours)
    report = {
        "loadwatch": " ".join(cmd),
        "wall_s": round(wall, 2),
        "cores": cores,
        "bench_cpu_s": round(ours, 2),
        "detached_cpu_s": round(detached, 2),
        "others_cpu_pct_of_core": round(100.0 * others / wall, 1) if wall > 0 else 0.0,
        "limit_pct": limit,
    }
    report["contention"] = report["others_cpu_pct_of_core"] > limit
    print(json.dumps(report), file=sys.stderr)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
