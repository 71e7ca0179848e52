#!/usr/bin/env python3
"""What retiring one version of a rainbow costs, on the sandbox's cluster c1.

Rolls out three versions of an Application with `versions.max: 4` (each on its own subdomain
through an HTTPRoute and the sandbox's gateway, Traefik), then retires the oldest as `prism retire`
does (the Release's `prism.dev/retire` annotation), while one client sends requests one after
another to the oldest's own hostname. Reports:

- the controller's writes from the command to the version's objects gone, from the API server's
  audit log (which records only the controller's identity; scripts/count-api-requests.py);
- the timeline: retirement started (Draining), routes gone from the cluster, the first 404 on
  its hostname, Drained, its pods gone, Retired, its Deployment gone;
- the requests on its hostname: served, 404 (after its route left: expected), other failures
  (a 503 would be one: its pods gone while the gateway still routed to them). Exit 1 on any.

Usage: scripts/bench-retire.py [--drain 10s] [--delete-after 10s]   (PRISM=path: a given binary)
"""

import argparse
import json
import os
import subprocess
import sys
import time

from gateway_bench import APP, LOG, Bench, Probe, kubectl, now, parse_time, wait


def rfc3339(moment):
    return moment.isoformat().replace("+00:00", "Z")


def application(namespace, revision, drain, delete_after):
    return json.dumps({
        "apiVersion": "prism.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "template": {"manifests": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP},
                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": APP}},
                          "template": {"metadata": {"labels": {"app": APP}},
                                       "spec": {"containers": [
                                           {"name": APP, "image": f"example.test/web:{revision}"}]}}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP},
                 "spec": {"selector": {"app": APP}, "ports": [{"port": 80}]}},
            ]},
            "traffic": {"provider": "gatewayAPI", "httpRoutes": [APP]},
            "versions": {"max": 4, "name": "v{revision}", "drainPeriod": drain,
                         "deleteAfter": delete_after},
            "strategy": {"steps": [
                {"name": "preview", "capacity": {"contender": "100%"},
                 "traffic": {"contender": 0, "routes": [
                     {"name": "by-version", "to": "each", "match": {"subdomain": "{version}"}}]}},
                {"name": "live", "traffic": {"contender": 100}},
            ]},
        },
    })


def status(namespace, name):
    found = json.loads(kubectl("get", "release", name, "-n", namespace, "-o", "json",
                               "--ignore-not-found") or "null")
    return (found or {}).get("status", {})


def pods(namespace, release):
    return json.loads(kubectl("get", "pods", "-n", namespace, "-l",
                              f"prism.dev/release={release}", "-o", "json"))["items"]


def deployment(namespace, release):
    return kubectl("get", "deployment", release, "-n", namespace, "--ignore-not-found", "-o",
                   "name").strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drain", default="10s")
    parser.add_argument("--delete-after", default="10s")
    args = parser.parse_args()
    bench = Bench("bench-retire")
    namespace, host = bench.namespace, bench.host
    oldest = f"{APP}-1"
    probe = Probe(bench.address, f"v1.{host}", pause=0.01)
    try:
        for revision in (1, 2, 3):
            kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
                    stdin=application(namespace, revision, args.drain, args.delete_after))
            wait(f"revision {revision} Complete",
                 lambda: status(namespace, f"{APP}-{revision}").get("phase") == "Complete")
        probe.start()
        wait("the gateway serves web-1 on v1's hostname",
             lambda: len(probe.answers) >= 20
             and all(r == oldest for _, r in probe.answers[-20:]))
        time.sleep(3)  # the rollout's last writes (statuses) before the window
        offset = os.path.getsize(LOG)
        commanded = now()
        kubectl("annotate", "release", oldest, "-n", namespace,
                f"prism.dev/retire={rfc3339(commanded)}")
        wait("web-1 Draining", lambda: status(namespace, oldest).get("state") == "Draining")
        pods_gone = wait("web-1's pods gone",
                         lambda: not pods(namespace, oldest) and now(), interval=0.1)
        retired = wait("web-1 Retired",
                       lambda: status(namespace, oldest).get("state") == "Retired"
                       and status(namespace, oldest))
        deployment_gone = wait("web-1's Deployment gone",
                               lambda: not deployment(namespace, oldest) and now(), interval=0.1)
        time.sleep(3)  # the status write that follows the deletion
        until = now()
        probe.stopped.set()
        probe.join()
    finally:
        bench.stop()
        probe.stopped.set()

    retirement = retired["retirement"]
    started = parse_time(retirement["startedAt"])
    # Before the command, 404s are the hostname not yet routed (the probe starts early).
    after_command = [(t, r) for t, r in probe.answers if t >= commanded]
    outcomes = {}
    for _, outcome in after_command:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    first_404 = next((t for t, r in after_command if r == "HTTP 404"), None)
    failed = {r: n for r, n in outcomes.items() if r not in (oldest, "HTTP 404")}

    def at(moment):
        return f"{(moment - commanded).total_seconds():6.1f} s"

    print(f"\ntimeline of {oldest}'s retirement (drainPeriod {args.drain}, deleteAfter "
          f"{args.delete_after}), after the command:")
    print(f"  Draining (retirement started, recorded) {at(started)}")
    print(f"  routes gone from the cluster (recorded) {at(parse_time(retirement['routesLeftAt']))}")
    if first_404:
        print(f"  first 404 on its hostname               {at(first_404)}")
    print(f"  Drained, scaled to 0 (recorded)         {at(parse_time(retirement['drainedAt']))}")
    print(f"  pods gone                               {at(pods_gone)}")
    print(f"  Retired (recorded)                      {at(parse_time(retirement['retiredAt']))}")
    print(f"  Deployment gone                         {at(deployment_gone)}")
    print(f"from retirement start to pods gone: {(pods_gone - started).total_seconds():.1f} s "
          f"(of which the drain period {args.drain})")
    print(f"requests on v1's hostname: {outcomes}")
    print(f"\nthe controller's requests from the command to {rfc3339(until)}:")
    subprocess.run(["scripts/count-api-requests.py", LOG, "--offset", str(offset),
                    "--since", rfc3339(commanded), "--until", rfc3339(until),
                    "--fail-on-noop"], check=False)
    print(f"controller log: {bench.work}/controller.log")
    kubectl("delete", "namespace", namespace, "--wait=false")
    if failed:
        print(f"FAIL: requests failed otherwise than 404: {failed}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
