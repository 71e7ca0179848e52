#!/usr/bin/env python3
"""Count the API requests of one user (the Prism controller) in kube-apiserver audit logs.

    scripts/count-api-requests.py [options] AUDIT_LOG [AUDIT_LOG...]

Reads audit logs in JSON-lines format, as the sandbox writes them
(.sandbox/cN/audit.log, see sandbox/README.md: the controller's writes at level
RequestResponse, its reads at level Metadata), and prints:

- reads (get, list, watch) and writes (create, update, patch, delete,
  deletecollection), by verb and by resource ("resource[.group][/subresource]",
  whatever the namespace; non-resource requests such as /openapi/v3 by path);
- failed writes: writes answered with a status other than 2xx (a conflict, a
  404 on delete): they changed nothing either;
- no-op writes: writes that left their object as it was (see below);
- with --marks, the writes between consecutive marks (e.g. the steps of a rollout);
- with --step-of NAMESPACE/RELEASE, the writes per step of that Release: each
  write counts for the step its status had in the controller's latest write
  of it (a write that moves the Release to a step counts for that step). Unlike
  marks taken by polling, this needs no clock and is exact.

Which events count: each request once, by its ResponseComplete event, except a
watch, which is counted by its ResponseStarted event: a watch only completes
when it ends, possibly long after the window that opened it, or never within
it. Events of other users are skipped. A window is chosen with --offset (bytes
to skip in the log, e.g. its size noted before the window), --since and
--until (compared with the request's requestReceivedTimestamp).

How a no-op write is recognised. A create, update or patch that changes its
object gets a new resourceVersion; the API server answers one that changes
nothing (an unchanged server-side apply, an update with the same content) with
the object as it was, resourceVersion included. The response's resourceVersion
is compared with what the object had before, known in one of three ways:

1. "precondition": the request carried metadata.resourceVersion (most updates
   do; objectRef.resourceVersion in the event), and the response has the same;
2. "last-seen": the same object (group, resource, namespace, name, in the same
   log, i.e. the same cluster) had the same resourceVersion in an earlier write
   response of the log;
3. "stale-revision": in the sandbox, resourceVersions are etcd revisions, one
   counter per cluster; a write that changes something gets a revision higher
   than that of every write completed before the request arrived. A response
   resourceVersion not higher than such an earlier write's (any object, same
   log) shows that nothing was written.

A dry run (a write verb with dryRun in the URL: the controller checks a new
template with the API server before it makes a Release) writes nothing and is
counted apart, as a dry run, not as a write.

Limits:
- A no-op write is only recognised when one of those three tells it: the
  first write of the log to an object, with no other write of the same user
  completed before it, cannot be judged (counted as "unjudged" in JSON).
  Within a benchmark's window after other controller writes, method 3 judges
  every create, update and patch.
- Method 3 relies on resourceVersions being etcd revisions, which is an
  implementation detail of kube-apiserver (true for the sandbox, not for
  aggregated API servers with other storage).
- Only the logged user's requests are seen: when another client changed the
  object after the controller's last write to it, a no-op write of the
  controller returns that client's resourceVersion, unknown to method 2;
  method 3 still catches it if any controller write completed after that change.
- Deletes are not judged: a delete responds with a Status or with the object
  as it was stored, so its resourceVersion says nothing; a successful delete
  counts as a change, a 404 as a failed write.
- A write's requestObject is not diffed; what changed is not reported.
- With --offset, a log that was rotated (it is smaller than the offset) is an
  error.
"""

import argparse
import bisect
import collections
import datetime
import json
import re
import sys

READS = ("get", "list", "watch")
WRITES = ("create", "update", "patch", "delete", "deletecollection")
JUDGED = ("create", "update", "patch")


def parse_time(text):
    """RFC 3339 with any number of fractional digits (date's %N gives nine)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, zone = m.groups()
    frac = (frac or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.datetime.fromisoformat(f"{base}.{frac}{zone}")


def resource_name(event):
    ref = event.get("objectRef")
    if not ref or not ref.get("resource"):
        return event.get("requestURI", "?").split("?")[0]
    name = ref["resource"]
    if ref.get("apiGroup"):
        name += "." + ref["apiGroup"]
    if ref.get("subresource"):
        name += "/" + ref["subresource"]
    return name


def object_key(log, event):
    """The object a write was about; the status subresource shares its resourceVersion."""
    ref = event.get("objectRef") or {}
    meta = (event.get("responseObject") or {}).get("metadata") or {}
    return (log, ref.get("apiGroup", ""), ref.get("resource"), ref.get("namespace", ""),
            ref.get("name") or meta.get("name"))


def response_rv(event):
    obj = event.get("responseObject") or {}
    if obj.get("kind") == "Status":
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return int(rv) if rv and rv.isdigit() else None


def read_events(path, offset, since, until, user):
    with open(path, "rb") as f:
        f.seek(0, 2)
        if offset > f.tell():
            sys.exit(f"{path}: offset {offset} beyond the end ({f.tell()} bytes): was it rotated?")
        f.seek(offset)
        for line in f:
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("user", {}).get("username") != user:
                continue
            received = parse_time(event["requestReceivedTimestamp"])
            if (since and received < since) or (until and received >= until):
                continue
            event["_received"] = received
            event["_completed"] = parse_time(event.get("stageTimestamp") or event["requestReceivedTimestamp"])
            yield event


def counted(event):
    stage, verb = event.get("stage"), event.get("verb")
    if verb == "watch":
        return stage == "ResponseStarted"
    return stage == "ResponseComplete"


def analyse(logs, offsets, since, until, user, marks, step_of):
    events = []
    for i, path in enumerate(logs):
        offset = offsets[i] if i < len(offsets) else 0
        events += [(path, e) for e in read_events(path, offset, since, until, user) if counted(e)]
    # Each log is in completion order already; the order across logs does not matter
    # for the judgement (state is per log), only for listing.
    events.sort(key=lambda pe: pe[1]["_completed"])

    totals = collections.Counter()
    by_verb = collections.Counter()
    by_resource = collections.defaultdict(collections.Counter)
    buckets = [0] * (len(marks) + 1)
    by_step = collections.Counter()
    step = "before"
    noops, failed = [], []
    unjudged = 0
    last_rv = {}            # object -> resourceVersion of the latest write response
    # Per log, the write responses in completion order, and the highest resourceVersion so far.
    done_at = collections.defaultdict(list)
    done_max_rv = collections.defaultdict(list)

    for path, e in events:
        verb = e["verb"]
        kind = "reads" if verb in READS else "writes" if verb in WRITES else "other"
        if kind == "writes" and "dryRun=" in e.get("requestURI", ""):
            kind = "dry_runs"
        totals[kind] += 1
        by_verb[f"dry-run {verb}" if kind == "dry_runs" else verb] += 1
        by_resource[resource_name(e)][kind] += 1
        if kind != "writes":
            continue
        buckets[sum(1 for m in marks if e["_received"] >= m)] += 1
        ref = e.get("objectRef") or {}
        if step_of and ref.get("resource") == "releases" and \
                (ref.get("namespace"), ref.get("name")) == step_of:
            status = (e.get("responseObject") or {}).get("status") or {}
            if status.get("step") is not None:
                step = str(status["step"])
        by_step[step] += 1
        code = (e.get("responseStatus") or {}).get("code", 0)
        row = {
            "time": e["requestReceivedTimestamp"], "log": path, "verb": verb,
            "resource": resource_name(e),
            "object": "/".join(x for x in (ref.get("namespace"), ref.get("name")) if x) or "-",
            "code": code,
        }
        if not 200 <= code < 300:
            failed.append(row)
            continue
        rv = response_rv(e)
        key = object_key(path, e)
        why = None
        if code == 201:
            pass  # created: a change by definition
        elif verb in JUDGED and rv is not None:
            before = (e.get("objectRef") or {}).get("resourceVersion")
            n = bisect.bisect_right(done_at[path], e["_received"])
            earlier = done_max_rv[path][n - 1] if n else None
            if before and before.isdigit() and int(before) == rv:
                why = "precondition"
            elif last_rv.get(key) == rv:
                why = "last-seen"
            elif earlier is not None and rv <= earlier:
                why = "stale-revision"
            elif key not in last_rv and earlier is None:
                unjudged += 1
        if why:
            noops.append(dict(row, resourceVersion=rv, method=why))
        if rv is not None:
            last_rv[key] = rv
            done_at[path].append(e["_completed"])
            done_max_rv[path].append(max(rv, done_max_rv[path][-1] if done_max_rv[path] else rv))

    return {
        "user": user,
        "reads": totals["reads"],
        "writes": totals["writes"],
        "other": totals["other"],
        "dry_runs": totals["dry_runs"],
        "by_verb": dict(sorted(by_verb.items())),
        "by_resource": {r: dict(c) for r, c in sorted(by_resource.items())},
        "noop_writes": noops,
        "failed_writes": failed,
        "unjudged_writes": unjudged,
        "writes_between_marks": buckets if marks else None,
        "writes_by_step": dict(by_step) if step_of else None,
    }


def print_text(report, marks, step_of):
    print(f"requests of {report['user']}: {report['reads']} reads, {report['writes']} writes"
          + (f", {report['dry_runs']} dry runs (write nothing)" if report["dry_runs"] else "")
          + (f", {report['other']} other" if report["other"] else ""))
    print("by verb:     " + ", ".join(f"{v} {n}" for v, n in report["by_verb"].items()))
    print("by resource:")
    width = max([len(r) for r in report["by_resource"]] + [8])
    print(f"  {'resource':<{width}}  reads  writes")
    for r, c in report["by_resource"].items():
        print(f"  {r:<{width}}  {c.get('reads', 0):5}  {c.get('writes', 0):6}")
    print(f"no-op writes: {len(report['noop_writes'])}"
          + (f" (unjudged: {report['unjudged_writes']})" if report["unjudged_writes"] else ""))
    for w in report["noop_writes"]:
        print(f"  {w['time']}  {w['verb']:<6} {w['resource']} {w['object']}"
              f"  rv {w['resourceVersion']} ({w['method']})")
    print(f"failed writes: {len(report['failed_writes'])}")
    for w in report["failed_writes"]:
        print(f"  {w['time']}  {w['verb']:<6} {w['resource']} {w['object']}  {w['code']}")
    if marks:
        print("writes between marks:")
        names = ["before mark 1"] + [f"mark {i + 1}.." + (f"mark {i + 2}" if i + 1 < len(marks) else "end")
                                     for i in range(len(marks))]
        for name, n in zip(names, report["writes_between_marks"]):
            print(f"  {name:<18} {n}")
    if step_of:
        print(f"writes by step of Release {'/'.join(step_of)}:")
        for name, n in report["writes_by_step"].items():
            print(f"  {name:<18} {n}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", metavar="AUDIT_LOG")
    p.add_argument("--offset", type=int, action="append", default=[],
                   help="bytes to skip in the log; once per log, in order")
    p.add_argument("--since", type=parse_time, help="RFC 3339: only requests received at or after")
    p.add_argument("--until", type=parse_time, help="RFC 3339: only requests received before")
    p.add_argument("--marks", default="",
                   help="comma-separated RFC 3339 times: count writes between consecutive marks")
    p.add_argument("--step-of", metavar="NAMESPACE/RELEASE",
                   help="count writes per step of this Release (from its status in the log)")
    p.add_argument("--user", default="prism-controller")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--fail-on-noop", action="store_true", help="exit 1 if a write changed nothing")
    p.add_argument("--max-writes", type=int, help="exit 1 if there are more writes than this")
    args = p.parse_args()
    marks = [parse_time(m) for m in args.marks.split(",") if m.strip()]

    step_of = tuple(args.step_of.split("/", 1)) if args.step_of else None
    report = analyse(args.logs, args.offset, args.since, args.until, args.user, marks, step_of)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_text(report, marks, step_of)

    status = 0
    if args.fail_on_noop and report["noop_writes"]:
        print(f"FAIL: {len(report['noop_writes'])} write(s) changed nothing", file=sys.stderr)
        status = 1
    if args.max_writes is not None and report["writes"] > args.max_writes:
        print(f"FAIL: {report['writes']} write(s), at most {args.max_writes} expected", file=sys.stderr)
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
