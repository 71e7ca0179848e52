#!/usr/bin/env python3
"""The controller's API requests per cluster, for the fleet benchmarks.

    scripts/bench-fleet.py [options] NAME=AUDIT_LOG[@OFFSET] [NAME=AUDIT_LOG[@OFFSET]...]

Each argument is one cluster's audit log (from OFFSET bytes on, e.g. its size noted before the
window). The counting is scripts/count-api-requests.py's (imported, not repeated): reads, writes
by verb, no-op and failed writes, per cluster, then the reads and writes per resource.

With --step-of NAMESPACE/RELEASE, also the writes per step of that Release, per cluster. The
Release lives in the management cluster (--management, default the first log), whose log tells
the steps; a write to another cluster counts for the step the Release had in the controller's
latest write of it before that write completed (count-api-requests.py orders the events of
several logs by completion time, and the clusters share the machine's clock). So the management
cluster's own writes per step are counted on its log alone, and another cluster's as the counts
on both logs minus those.
"""

import argparse
import collections
import importlib.util
import os
import sys

_spec = importlib.util.spec_from_file_location(
    "count_api_requests", os.path.join(os.path.dirname(os.path.abspath(__file__)), "count-api-requests.py"))
count = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(count)


def parse_log(arg):
    name, sep, rest = arg.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=AUDIT_LOG[@OFFSET], got {arg!r}")
    path, _, offset = rest.partition("@")
    return name, path, int(offset or 0)


def report(logs, since, until, user, step_of=None):
    return count.analyse([path for _, path, _ in logs], [offset for _, _, offset in logs],
                         since, until, user, [], step_of)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", type=parse_log, metavar="NAME=AUDIT_LOG[@OFFSET]")
    p.add_argument("--since", type=count.parse_time, help="RFC 3339: only requests received at or after")
    p.add_argument("--until", type=count.parse_time, help="RFC 3339: only requests received before")
    p.add_argument("--step-of", metavar="NAMESPACE/RELEASE", help="writes per step of this Release")
    p.add_argument("--management", help="the cluster whose log has the Release (default: the first)")
    p.add_argument("--user", default="prism-controller")
    p.add_argument("--namespace", help="leave out requests about objects of other namespaces (another "
                   "controller running as the same user); cluster-wide ones still count")
    p.add_argument("--resources", action="store_true", help="also reads and writes per resource")
    p.add_argument("--latency", action="store_true",
                   help="also how long the requests took, and how many were in flight at once")
    p.add_argument("--fail-on-noop", action="store_true", help="exit 1 if a write changed nothing")
    p.add_argument("--max-writes", type=int, help="exit 1 if a cluster has more writes than this")
    p.add_argument("--besides", action="append", default=[], metavar="RESOURCE",
                   help="with --max-writes: not counting the writes of this resource (as --resources names it; "
                        "leases.coordination.k8s.io: a leader renews its Lease at rest too)")
    args = p.parse_args()
    if args.namespace:
        only_namespace(args.namespace)

    reports = {name: report([(name, path, offset)], args.since, args.until, args.user)
               for name, path, offset in args.logs}
    verbs = sorted({v for r in reports.values() for v in r["by_verb"]})
    header = ["cluster", "reads", "writes"] + verbs + ["no-op", "failed"]
    rows = [[name, r["reads"], r["writes"]] + [r["by_verb"].get(v, 0) for v in verbs]
            + [len(r["noop_writes"]), len(r["failed_writes"])] for name, r in reports.items()]
    total = ["all"] + [sum(row[i] for row in rows) for i in range(1, len(header))]
    table(header, rows + ([total] if len(rows) > 1 else []))

    if args.resources:
        for name, r in reports.items():
            print(f"{name} by resource (reads/writes):")
            for resource, c in r["by_resource"].items():
                print(f"  {resource:<40} {c.get('reads', 0):7} {c.get('writes', 0):7}")

    if args.latency:
        print("latency of the controller's requests but watches, and the most in flight at once:")
        table(["cluster", "requests", "p50", "p90", "p99", "max", "in flight"],
              [[name] + latency(path, offset, args.since, args.until, args.user)
               for name, path, offset in args.logs])

    status = 0
    for name, r in reports.items():
        listing(name, "no-op write", r["noop_writes"],
                lambda w: f"{w['time']} {w['verb']} {w['resource']} {w['object']}"
                          f" rv {w['resourceVersion']} ({w['method']})")
        listing(name, "failed write", r["failed_writes"],
                lambda w: f"{w['time']} {w['verb']} {w['resource']} {w['object']} {w['code']}")
        if args.fail_on_noop and r["noop_writes"]:
            print(f"FAIL: {name}: {len(r['noop_writes'])} write(s) changed nothing", file=sys.stderr)
            status = 1
        writes = r["writes"] - sum(r["by_resource"].get(b, {}).get("writes", 0) for b in args.besides)
        if args.max_writes is not None and writes > args.max_writes:
            besides = f" besides {', '.join(args.besides)}" if args.besides else ""
            print(f"FAIL: {name}: {writes} write(s){besides}, at most {args.max_writes} expected", file=sys.stderr)
            status = 1

    if args.step_of:
        step_of = tuple(args.step_of.split("/", 1))
        by_name = {name: (name, path, offset) for name, path, offset in args.logs}
        management = by_name[args.management or args.logs[0][0]]
        alone = report([management], args.since, args.until, args.user, step_of)["writes_by_step"]
        by_step = collections.OrderedDict()
        for name, log in by_name.items():
            if log is management:
                by_step[name] = alone
            else:
                both = report([management, log], args.since, args.until, args.user, step_of)
                steps = both["writes_by_step"]
                by_step[name] = {s: steps[s] - alone.get(s, 0) for s in steps}
        steps = list(dict.fromkeys(s for counts in by_step.values() for s in counts))
        print(f"writes by step of Release {args.step_of} (the step its status had when the write completed):")
        table(["cluster"] + steps, [[name] + [counts.get(s, 0) for s in steps]
                                    for name, counts in by_step.items()])
    sys.exit(status)


def only_namespace(namespace):
    """Makes count-api-requests.py skip the events about objects of other namespaces."""
    every = count.read_events

    def read_events(*args):
        return (e for e in every(*args)
                if (e.get("objectRef") or {}).get("namespace") in (None, "", namespace))
    count.read_events = read_events


def listing(name, what, writes, line, most=10):
    """Each write, or when there are many, their count by verb, resource and code, and examples."""
    if len(writes) <= most:
        for w in writes:
            print(f"{name} {what}: {line(w)}")
        return
    kinds = collections.Counter((w["verb"], w["resource"], w["code"]) for w in writes)
    print(f"{name}: {len(writes)} {what}s: " + ", ".join(
        f"{n} {verb} {resource}" + (f" {code}" if what == "failed write" else "")
        for (verb, resource, code), n in kinds.most_common()))
    for w in writes[:3]:
        print(f"  e.g. {line(w)}")


def latency(path, offset, since, until, user):
    """[requests, p50, p90, p99, max, most in flight] of the requests but watches (which last)."""
    spans = [(e["_received"], e["_completed"])
             for e in count.read_events(path, offset, since, until, user)
             if count.counted(e) and e.get("verb") != "watch"]
    if not spans:
        return [0, "-", "-", "-", "-", 0]
    took = sorted((done - received).total_seconds() for received, done in spans)
    edges = sorted([(received, 1) for received, _ in spans] + [(done, -1) for _, done in spans])
    in_flight = most = 0
    for _, step in edges:
        in_flight += step
        most = max(most, in_flight)
    at = lambda q: f"{took[min(len(took) - 1, int(q * len(took)))]:.2f}s"
    return [len(took), at(0.5), at(0.9), at(0.99), f"{took[-1]:.2f}s", most]


def table(header, rows):
    cells = [[str(c) for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
