#!/usr/bin/env python3
"""Where a latency tail comes from: on-CPU time of given processes beside
the requests' latencies, in 100 ms steps.

  bench/cpu_timeline.py record OUT SECONDS PID...
      every 10 ms, appends to OUT: the time, /proc/stat's first cpu line
      (user nice system idle iowait irq softirq steal, in ticks) and each
      PID's on-CPU ns (all its threads, /proc/PID/task/*/schedstat)
  bench/cpu_timeline.py report OUT H2LOAD_LOG [NAME...]
      per 100 ms of the h2load run (--log-file: start µs since the epoch,
      status, duration µs): the slowest request, the machine's busy and
      idle ticks, and each process's CPU ms (named NAME... in PID order)

A tail the proxy causes shows as its CPU going up alone; one where every
process (the app included) needs several times its usual CPU per request
while the machine is mostly idle is the host slowing the VM down.
"""
import collections
import os
import sys
import time


def on_cpu_ns(pid):
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        pass  # gone: counts as nothing more
    return total


def record(out, seconds, pids):
    end = time.time() + seconds
    with open(out, "w") as f:
        while time.time() < end:
            with open("/proc/stat") as s:
                cpu = s.readline().split()[1:9]
            f.write("%.6f %s %s\n" % (time.time(), " ".join(cpu),
                                      " ".join(str(on_cpu_ns(p)) for p in pids)))
            time.sleep(0.01)


def report(out, log, names):
    reqs = []
    with open(log) as f:
        for line in f:
            start, _status, dur = line.split()[:3]
            reqs.append((int(start) / 1e6, int(dur) / 1000.0))
    if not reqs:
        sys.exit("no requests in " + log)
    t0 = min(r[0] for r in reqs)
    rows = []
    with open(out) as f:
        for line in f:
            v = line.split()
            rows.append((float(v[0]), [int(x) for x in v[1:9]], [int(x) for x in v[9:]]))
    steps = collections.defaultdict(lambda: None)
    for (_, c1, p1), (t2, c2, p2) in zip(rows, rows[1:]):
        b = int((t2 - t0) * 10)
        cur = steps[b] or [[0] * 8, [0.0] * len(p2)]
        cur[0] = [a + (y - x) for a, x, y in zip(cur[0], c1, c2)]
        cur[1] = [a + (y - x) / 1e6 for a, x, y in zip(cur[1], p1, p2)]
        steps[b] = cur
    worst = collections.defaultdict(float)
    for start, dur in reqs:
        b = int((start - t0) * 10)
        worst[b] = max(worst[b], dur)
    cols = names or ["pid%d" % (i + 1) for i in range(len(rows[0][2]) if rows else 0)]
    print("s      slowest ms  busy idle steal | CPU ms: " + " ".join(cols))
    for b in sorted(set(worst) & set(k for k, v in steps.items() if v)):
        c, p = steps[b]
        busy = c[0] + c[1] + c[2] + c[5] + c[6]
        print("%5.1f  %9.1f  %4d %4d %5d | %s" % (b / 10, worst[b], busy, c[3], c[7],
                                                 " ".join("%6.1f" % x for x in p)))


def main(argv):
    if len(argv) >= 4 and argv[1] == "record":
        record(argv[2], float(argv[3]), [int(p) for p in argv[4:]])
    elif len(argv) >= 4 and argv[1] == "report":
        report(argv[2], argv[3], argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
