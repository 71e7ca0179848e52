"""What the single-cluster gateway benchmarks share (scripts/bench-gateway.py,
scripts/bench-retire.py): the sandbox's cluster c1, its gateway, the controller under test
running as the prism-controller identity (so that c1's audit log counts its requests), and a
client that sends requests one after another through the gateway. Imported, not run."""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG = os.path.join(REPO, ".sandbox/c1/audit.log")
APP = "web"
DEADLINE = 180


def kubectl(*args, stdin=None):
    return subprocess.run(
        [os.path.join(REPO, "sandbox/sandbox"), "kubectl", "c1", *args],
        input=stdin, capture_output=True, text=True, check=True,
    ).stdout


def now():
    return datetime.now(timezone.utc)


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def route(namespace, host, gateway):
    """The user's HTTPRoute `web` for `host`, attached to `gateway` (NAMESPACE/NAME)."""
    gateway_namespace, gateway_name = gateway.split("/")
    return json.dumps({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": gateway_name, "namespace": gateway_namespace}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": APP, "port": 80}]}],
        },
    })


def wait(what, check, interval=0.05):
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE:
        found = check()
        if found:
            return found
        time.sleep(interval)
    sys.exit(f"FAIL: {what} not within {DEADLINE}s")


class Bench:
    """c1 up, the CRDs of the binary under test ($PRISM, else a release build), a namespace
    `<prefix>-<time>` with the user's HTTPRoute for host `<namespace>.bench.test`, and the
    controller on that namespace. `stop()` stops the controller."""

    def __init__(self, prefix):
        os.chdir(REPO)
        subprocess.run(["sandbox/sandbox", "up", "--clusters", "1"], check=True)
        prism = os.environ.get("PRISM")
        if not prism:
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "prism"], check=True)
            prism = "target/release/prism"
        self.namespace = f"{prefix}-{int(time.time())}"
        self.host = f"{self.namespace}.bench.test"
        self.address = open(".sandbox/c1/gateway-address").read().strip()
        # Tests install the CRDs under their own field manager: take the fields over.
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=prism", "-f", "-",
                stdin=subprocess.run([prism, "crds"], capture_output=True, text=True,
                                     check=True).stdout)
        kubectl("create", "namespace", self.namespace)
        kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
                stdin=route(self.namespace, self.host,
                            open(".sandbox/c1/gateway").read().strip()))
        self.work = tempfile.mkdtemp(prefix=f"prism-{prefix}.")
        self.controller = subprocess.Popen(
            [prism, "controller", "-n", self.namespace],
            env={**os.environ, "KUBECONFIG": ".sandbox/c1/controller.kubeconfig",
                 "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            stdout=open(os.path.join(self.work, "controller.log"), "w"),
            stderr=subprocess.STDOUT)

    def stop(self):
        self.controller.terminate()
        self.controller.wait()


class Probe(threading.Thread):
    """One client sending requests for `host` one after another through the gateway at
    `address`; records (time, outcome): the serving release, `HTTP <status>` for another
    answer, or `failed <error>` when none came."""

    def __init__(self, address, host, pause=0.0):
        super().__init__(daemon=True)
        self.address, self.host, self.pause = address, host, pause
        self.answers = []
        self.stopped = threading.Event()

    def run(self):
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        while not self.stopped.is_set():
            try:
                connection.request("GET", "/", headers={"Host": self.host})
                answer = connection.getresponse()
                answer.read()
                served = answer.getheader("X-Prism-Release") if answer.status == 200 else None
                self.answers.append((now(), served or f"HTTP {answer.status}"))
            except (OSError, http.client.HTTPException) as error:
                self.answers.append((now(), f"failed {error}"))
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=5)
            time.sleep(self.pause)
