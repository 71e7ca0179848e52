#!/usr/bin/env python3
"""How fast a gatewayAPI rollout moves real requests, on the sandbox's cluster c1.

Rolls out ROLLOUTS new versions (3 steps each: 25% and 50% held by a manual gate, then 100%) of
an Application routed through an HTTPRoute and the sandbox's gateway (Traefik), while one client
sends requests one after another through the gateway and records which version served each.
Then reports, from the API server's audit log (which records only the controller's identity):

- the controller's writes per step of the first rollout (scripts/count-api-requests.py);
- gate -> write: from each promotion (the Release's spec.targetStep patched, as `prism promote`
  does) to the controller's HTTPRoute write of that step's weights;
- write -> serving: from each HTTPRoute write that changes the weights to the first moment the
  gateway serves the new split (each step is promoted only once its split is served, so that
  changes do not overlap) (the first run of WINDOW consecutive answers with the new share
  of the newest version; Traefik's weighted round robin is deterministic, so a run of one
  client's answers shows the split exactly).

Usage: scripts/bench-gateway.py [--rollouts N]   (PRISM=path uses a given binary)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from gateway_bench import APP, LOG, Bench, Probe, kubectl, now, parse_time, wait

WINDOW = 20


def application(namespace, image):
    return json.dumps({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "template": {"manifests": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP},
                 "spec": {"replicas": 4, "selector": {"matchLabels": {"app": APP}},
                          "template": {"metadata": {"labels": {"app": APP}},
                                       "spec": {"containers": [{"name": APP, "image": image}]}}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP},
                 "spec": {"selector": {"app": APP}, "ports": [{"port": 80}]}},
            ]},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": [APP]},
            "strategy": {"steps": [
                {"name": "canary", "capacity": {"contender": "25%"}, "traffic": {"contender": 25},
                 "gate": {"manual": True}},
                {"name": "half", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
                 "gate": {"manual": True}},
                {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
                 "traffic": {"contender": 100}},
            ]},
        },
    })


def release(namespace, revision):
    """(name, step, achieved, phase) of the Release of this revision, or None."""
    items = json.loads(kubectl("get", "releases", "-n", namespace, "-o", "json"))["items"]
    for item in items:
        if item["spec"].get("revision") == revision:
            status = item.get("status", {})
            return (item["metadata"]["name"], status.get("step"),
                    status.get("achievedAt") is not None, status.get("phase"))
    return None


def serving_since(answers, after, newest, percent):
    """The time of the first answer after `after` that starts a run of WINDOW answers with the
    newest version's share at `percent`."""
    wanted = round(percent * WINDOW / 100)
    later = [(t, r) for t, r in answers if t >= after]
    for i in range(len(later) - WINDOW + 1):
        window = later[i:i + WINDOW]
        if sum(1 for _, r in window if r == newest) == wanted:
            return window[0][0]
    return None


def route_writes(offset, namespace):
    """(time, weights) of the controller's writes of the HTTPRoute, from the audit log."""
    writes = []
    with open(LOG, "rb") as log:
        log.seek(offset)
        for line in log:
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if (event.get("stage") != "ResponseComplete" or event.get("verb") != "patch"
                    or ref.get("resource") != "httproutes" or ref.get("namespace") != namespace
                    or ref.get("name") != APP):
                continue
            weights = {}
            for rule in (event.get("requestObject") or {}).get("spec", {}).get("rules", []):
                if rule.get("name", "").startswith("prism-"):
                    continue
                for backend in rule.get("backendRefs", []):
                    weights[backend["name"]] = backend.get("weight", 1)
            writes.append((parse_time(event["requestReceivedTimestamp"]), weights))
    return writes


def report(name, seconds):
    if not seconds:
        print(f"{name}: no samples")
        return
    ms = [round(s * 1000) for s in seconds]
    print(f"{name}: median {statistics.median(ms):.0f} ms, max {max(ms)} ms, "
          f"n={len(ms)} {sorted(ms)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=3)
    args = parser.parse_args()
    bench = Bench("bench-gw")
    namespace, host, address = bench.namespace, bench.host, bench.address
    probe = None
    try:
        kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
                stdin=application(namespace, "example.test/web:1"))
        wait("revision 1 Complete", lambda: (r := release(namespace, 1)) and r[3] == "Complete")
        probe = Probe(address, host)
        probe.start()
        wait("the gateway serves web-1",
             lambda: all(r == "web-1" for _, r in probe.answers[-WINDOW:])
             and len(probe.answers) >= WINDOW)
        # Before, the route sent requests to a Service that did not exist yet.
        served_from = now()
        offset = os.path.getsize(LOG)
        gates, first_rollout = [], None
        for revision in range(2, 2 + args.rollouts):
            started = now()
            kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
                    stdin=application(namespace, f"example.test/web:{revision}"))
            for step, percent in ((0, 25), (1, 50)):
                name = wait(f"revision {revision} achieves step {step + 1}",
                            lambda: (r := release(namespace, revision)) and r[1] == step
                            and r[2] and r[0])
                # Traefik reports a route accepted before it serves it; promoting only once the
                # split is served keeps each measured change apart from the next.
                newest = f"{APP}-{revision}"
                wait(f"the gateway serves {percent}% to {newest}",
                     lambda: sum(1 for _, r in probe.answers[-WINDOW:] if r == newest)
                     == round(percent * WINDOW / 100))
                gates.append(now())
                kubectl("patch", "release", name, "-n", namespace, "--type=merge",
                        "-p", json.dumps({"spec": {"targetStep": step + 1}}))
            wait(f"revision {revision} Complete",
                 lambda: (r := release(namespace, revision)) and r[3] == "Complete")
            wait(f"the gateway serves all to {APP}-{revision}",
                 lambda: all(r == f"{APP}-{revision}" for _, r in probe.answers[-WINDOW:]))
            if first_rollout is None:
                first_rollout = (started, now(), name)
        time.sleep(3)
        probe.stopped.set()
        probe.join()
    finally:
        bench.stop()
        if probe:
            probe.stopped.set()

    writes = route_writes(offset, namespace)
    answers = [(t, r) for t, r in probe.answers if t >= served_from]
    failed = [(t, r) for t, r in answers if r.startswith(("failed", "HTTP"))]
    print(f"{len(answers)} requests through the gateway during the rollouts, {len(failed)} failed")
    bursts = []
    for t, r in failed:
        if bursts and (t - bursts[-1][1]).total_seconds() < 1:
            bursts[-1][1], bursts[-1][2] = t, bursts[-1][2] + 1
        else:
            bursts.append([t, t, 1, r])
    for first, last, count, reason in bursts:
        print(f"  {count} failed from {first.isoformat()} to {last.isoformat()}: {reason}")
    with open(os.path.join(bench.work, "answers.txt"), "w") as out:
        out.writelines(f"{t.isoformat()} {r}\n" for t, r in answers)
    with open(os.path.join(bench.work, "writes.txt"), "w") as out:
        out.writelines(f"{t.isoformat()} {json.dumps(w)}\n" for t, w in route_writes(offset, namespace))
    print(f"answers and route writes in {bench.work}")

    gate_to_write = []
    for gate in gates:
        later = [t for t, _ in writes if t >= gate]
        if later:
            gate_to_write.append((later[0] - gate).total_seconds())
    write_to_serving = []
    previous = None
    for written, weights in writes:
        versions = sorted(weights, key=lambda name: int(name.rsplit("-", 1)[1]))
        if not versions or weights == previous:
            previous = weights
            continue
        newest = versions[-1]
        percent = 100 * weights[newest] / sum(weights.values())
        served = serving_since(answers, written, newest, percent)
        if served:
            write_to_serving.append((served - written).total_seconds())
        print(f"  HTTPRoute write at {written.isoformat()}: {weights}, served "
              + (f"{(served - written).total_seconds() * 1000:.0f} ms later" if served else "never"))
        previous = weights

    started, completed, name = first_rollout
    print(f"\nwrites per step of the first rollout ({name}), from the audit log:")
    subprocess.run(["scripts/count-api-requests.py", LOG, "--offset", str(offset),
                    "--since", started.isoformat().replace("+00:00", "Z"),
                    "--until", completed.isoformat().replace("+00:00", "Z"),
                    "--step-of", f"{namespace}/{name}"], check=False)
    print()
    report("gate -> HTTPRoute write", gate_to_write)
    report("HTTPRoute write -> gateway serves the new split", write_to_serving)
    kubectl("delete", "namespace", namespace, "--wait=false")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
