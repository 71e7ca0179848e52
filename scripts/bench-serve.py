#!/usr/bin/env python3
"""The measurements of scripts/bench-serve.sh against a running `prism serve` (standard library
only): page times (client and Server-Timing, cold and warm), the server's memory, and the
delivery of changes to many Server-Sent Events clients. The fleet and its Applications are the
shell script's; this script only reads the API and patches through the management cluster.

Cold and warm: the server renders a response once per change of its caches and shares it. A
change is made by patching the status of the probe Application (in a namespace no controller
watches: nothing acts on it) to a new `strategy`; polling the probe's own page until it shows it
proves the server has the change, and renders only the probe's page. The next GET of another
page is then a fresh rendering (cold); the GETs after it, until the next change, are shared
(warm). The sandbox is shared: any other change in it (another test's pods) makes a "warm" GET
cold too, so the warm tail is noisy.
"""

import argparse
import asyncio
import base64
import http.client
import json
import re
import ssl
import statistics
import sys
import time
import urllib.parse

# ---------------------------------------------------------------- the management cluster


class Kube:
    """Merge patches and reads on the management cluster as its kubeconfig's user (a token)."""

    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()
        self.server = urllib.parse.urlsplit(re.search(r"server:\s*(\S+)", text).group(1))
        ca = base64.b64decode(re.search(r"certificate-authority-data:\s*(\S+)", text).group(1))
        self.token = re.search(r"token:\s*(\S+)", text).group(1)
        self.context = ssl.create_default_context(cadata=ca.decode())
        self.connection = None

    def request(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json"
            body = json.dumps(body)
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(
                    self.server.hostname, self.server.port, context=self.context, timeout=30)
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.connection = None
                if attempt == 2:
                    raise
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def patch(self, path, body):
        return self.request("PATCH", path, body)

    def get(self, path):
        return self.request("GET", path)


def application_path(namespace, name, subresource=""):
    return f"/apis/prism.dev/v1alpha1/namespaces/{namespace}/applications/{name}{subresource}"


def release_path(namespace, name):
    return f"/apis/prism.dev/v1alpha1/namespaces/{namespace}/releases/{name}"


# ---------------------------------------------------------------- the API, one request at a time


class Api:
    """Sequential GETs on one keep-alive connection to `prism serve`."""

    def __init__(self, port, token):
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path):
        """(status, body, client ms, server ms from Server-Timing or None)."""
        started = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        client = (time.perf_counter() - started) * 1000
        timing = re.search(r"app;dur=([0-9.]+)", response.getheader("Server-Timing") or "")
        return response.status, body, client, float(timing.group(1)) if timing else None

    def json(self, path):
        status, body, _, _ = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)


def app_page(namespace, name):
    return f"/api/v1/namespaces/{namespace}/applications/{name}"


class Probe:
    """The probe Application, whose status is changed to make a change of the server's caches."""

    def __init__(self, kube, api, namespace, name):
        self.kube, self.api, self.namespace, self.name = kube, api, namespace, name
        self.count = 0

    def change(self, value):
        """Patches the probe's status.strategy to `value`; returns when (perf counter) the
        patch's response arrived."""
        path = application_path(self.namespace, self.name, "/status")
        self.kube.patch(path, {"status": {"strategy": value}})
        return time.perf_counter()

    def change_seen(self, deadline=10.0):
        """Changes the probe and waits until the server shows it on the probe's page."""
        self.count += 1
        value = f"page-{self.count}"
        self.change(value)
        until = time.monotonic() + deadline
        while self.api.json(app_page(self.namespace, self.name))["summary"]["strategy"] != value:
            if time.monotonic() > until:
                raise RuntimeError(f"the server did not show the probe's {value} in {deadline}s")
            time.sleep(0.002)


def pages(api, probe, path, requests, colds):
    """`colds` rounds of: a change, a cold GET of `path`, then warm GETs; `requests` warm GETs
    in all. Returns {"cold": [(client, server)], "warm": [...]}."""
    samples = {"cold": [], "warm": []}
    for round_ in range(colds):
        probe.change_seen()
        warm = requests // colds + (1 if round_ < requests % colds else 0)
        for i in range(1 + warm):
            status, body, client, server = api.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
            if server is None:
                raise RuntimeError(f"GET {path}: no Server-Timing header")
            samples["cold" if i == 0 else "warm"].append((client, server, len(body)))
    return samples


# ---------------------------------------------------------------- Server-Sent Events clients


class SseClient:
    """One stream, read over raw HTTP/1.1 (chunked): notes when the first update showing what is
    expected arrived."""

    def __init__(self, port, token, path):
        self.port, self.token, self.path = port, token, path
        self.data = b""
        self.shows = None
        self.seen = None
        self.event = asyncio.Event()
        self.task = None
        self.error = None

    async def run(self):
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 26)
            writer.write(
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n")[0].decode())
            if b"transfer-encoding: chunked" not in head.lower():
                raise RuntimeError("the stream is not chunked")
            body = bytearray()
            searched = 0
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    raise RuntimeError("the server ended the stream")
                body += await reader.readexactly(size)
                await reader.readexactly(2)
                end = body.find(b"\n\n", searched)
                while end >= 0:
                    self.received(bytes(body[:end]))
                    del body[: end + 2]
                    end = body.find(b"\n\n")
                searched = max(len(body) - 1, 0)
        except Exception as error:  # reported by whoever waits on this client
            self.error = f"{self.path}: {error!r}"
            self.event.set()
        finally:
            if writer:
                writer.close()

    def received(self, block):
        arrived = time.perf_counter()
        if block.startswith(b"event: error"):
            raise RuntimeError(block.decode(errors="replace")[:300])
        if not block.startswith(b"event: update\ndata: "):
            return  # a keep-alive comment
        self.data = block[len(b"event: update\ndata: "):]
        self.check(arrived)

    def check(self, arrived):
        if self.shows and self.seen is None and self.data and self.shows(self.data):
            self.seen = arrived
            self.event.set()

    def expect(self, shows):
        """From now on, notes the first update for which `shows(data)` holds (the latest one
        already received counts, as of now)."""
        self.shows, self.seen = shows, None
        self.event.clear()
        self.check(time.perf_counter())

    async def wait(self, timeout):
        """When the expected update arrived (perf counter), or None after `timeout` s."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        if self.error:
            raise RuntimeError(self.error)
        return self.seen


def summary_field(data, namespace, name, field):
    """An AppSummary's field, as raw text, in a fleet's JSON (an application's summary starts
    with its namespace and name) or in an application's (one `summary`, keys sorted), without
    parsing the whole document: 100 clients parsing a big fleet would delay each other."""
    start = data.find(f'{{"namespace":"{namespace}","name":"{name}",'.encode())
    if start < 0:
        start = data.find(b'"summary":{')
    if start < 0:
        return None
    match = re.compile(rf'"{field}":("[^"]*"|[^,}}]*)'.encode()).search(data, start)
    return match.group(1).decode() if match else None


async def sse_delivery(port, token, streams, prepare, changes, timeout):
    """Connects every stream and waits for each one's first update; then `changes` times,
    `prepare(k)` gives (a test per stream kind of an update showing change k, the patch making
    it, which returns when its response arrived), and each client's delivery is timed from the
    patch's response. Returns per stream kind the latencies (ms), the misses and the median of
    each change."""
    clients = [(kind, SseClient(port, token, path)) for kind, path in streams]
    for _, client in clients:
        client.task = asyncio.create_task(client.run())
        client.expect(lambda data: True)
    connected = await asyncio.gather(*(c.wait(60) for _, c in clients))
    if any(t is None for t in connected):
        raise RuntimeError(f"{connected.count(None)} streams sent no first update in 60 s")
    results = {kind: {"latencies": [], "missed": 0, "per_change": []} for kind, _ in streams}
    try:
        for k in range(1, changes + 1):
            shows_by_kind, patch = await asyncio.to_thread(prepare, k)
            for kind, client in clients:
                client.expect(shows_by_kind[kind])
            patched = await asyncio.to_thread(patch)
            arrivals = await asyncio.gather(*(c.wait(timeout) for _, c in clients))
            per_change = {kind: [] for kind in results}
            for (kind, _), arrived in zip(clients, arrivals):
                if arrived is None:
                    results[kind]["missed"] += 1
                else:
                    per_change[kind].append((arrived - patched) * 1000)
            for kind, latencies in per_change.items():
                results[kind]["latencies"] += latencies
                results[kind]["per_change"].append(
                    round(statistics.median(latencies), 1) if latencies else None)
    finally:
        for _, client in clients:
            client.task.cancel()
    return results


# ---------------------------------------------------------------- figures and the report


def memory(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def quantiles(values):
    values = sorted(values)
    if not values:
        return {"n": 0}
    p99 = values[min(len(values) - 1, max(0, -(-99 * len(values) // 100) - 1))]
    return {"n": len(values), "min": round(values[0], 3),
            "median": round(statistics.median(values), 3),
            "p99": round(p99, 3), "max": round(values[-1], 3)}


def page_figures(samples):
    return {kind: {"client_ms": quantiles([c for c, _, _ in rows]),
                   "server_ms": quantiles([s for _, s, _ in rows]),
                   "bytes": rows[-1][2] if rows else 0}
            for kind, rows in samples.items()}


def wait_for_fleet(api, namespace, apps, timeout):
    """Waits until the fleet shows `apps` Applications of `namespace` settled (not rolling out)."""
    until = time.monotonic() + timeout
    while True:
        fleet = api.json("/api/v1/fleet")
        settled = [a for a in fleet["applications"]
                   if a["namespace"] == namespace and not a["rollingOut"]]
        if len(settled) >= apps:
            return fleet
        if time.monotonic() > until:
            raise RuntimeError(f"the fleet shows {len(settled)} of {namespace}'s {apps}"
                               f" applications settled after {timeout}s")
        time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--kubeconfig", required=True, help="the management cluster's admin")
    parser.add_argument("--pid", type=int, required=True, help="prism serve's")
    parser.add_argument("--namespace", required=True, help="the benchmark's Applications'")
    parser.add_argument("--apps", type=int, required=True)
    parser.add_argument("--detail", nargs="+", required=True, help="applications whose page to GET")
    parser.add_argument("--probe", required=True, help="NAMESPACE/NAME")
    parser.add_argument("--gated", required=True, help="NAME of the application to promote")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--colds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    token = open(args.token_file).read().strip()
    kube = Kube(args.kubeconfig)
    api = Api(args.port, token)
    probe_namespace, probe_name = args.probe.split("/")
    probe = Probe(kube, api, probe_namespace, probe_name)
    results = {"apps": args.apps, "requests": args.requests, "colds": args.colds}

    fleet = wait_for_fleet(api, args.namespace, args.apps, 600)
    results["fleet_applications"] = len(fleet["applications"])
    results["memory_filled"] = memory(args.pid)
    log(f"caches filled: {len(fleet['applications'])} applications in the fleet; "
        f"prism serve {results['memory_filled']}")

    results["fleet"] = page_figures(pages(api, probe, "/api/v1/fleet", args.requests, args.colds))
    log("fleet page measured")
    results["detail"] = {}
    for i, name in enumerate(args.detail):
        # The first application as many times as the fleet; the others a quarter as often.
        requests, colds = (args.requests, args.colds) if i == 0 else \
            (max(args.requests // 4, 1), max(args.colds // 4, 1))
        path = app_page(args.namespace, name)
        results["detail"][name] = page_figures(pages(api, probe, path, requests, colds))
    log("application pages measured")
    results["memory_measured"] = memory(args.pid)

    def probe_change(k):
        value = f"stream-{k}"

        def shows(data):
            return summary_field(data, probe_namespace, probe_name, "strategy") == f'"{value}"'

        return {"fleet": shows}, lambda: probe.change(value)

    fleet_streams = [("fleet", "/api/v1/fleet/stream")] * args.clients
    results["sse_probe"] = asyncio.run(sse_delivery(
        args.port, token, fleet_streams, probe_change, args.changes, 10))
    log("fleet streams measured on status changes of the probe")

    def promotion(k):
        release = kube.get(application_path(args.namespace, args.gated))["status"]["contender"]
        path = release_path(args.namespace, release)
        step = kube.get(path).get("status", {}).get("step") or 0

        def shows(data):
            return summary_field(data, args.namespace, args.gated, "step") == str(step + 1)

        def patch():
            kube.patch(path, {"spec": {"targetStep": step + 1}})
            return time.perf_counter()

        return {"fleet": shows, "application": shows}, patch

    app_streams = [("application", app_page(args.namespace, args.gated) + "/stream")]
    results["sse_step"] = asyncio.run(sse_delivery(
        args.port, token, fleet_streams + app_streams * args.clients, promotion, args.changes, 30))
    log("fleet and application streams measured on real step changes")
    results["memory_after"] = memory(args.pid)
    for run in ("sse_probe", "sse_step"):
        for figures in results[run].values():
            figures["ms"] = quantiles(figures.pop("latencies"))
    with open(args.out, "w") as out:
        json.dump(results, out, indent=2)
    print(report(results, args))


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def report(results, args):
    lines = []

    def row(what, figures):
        lines.append(f"{what:<44} {figures.get('n', 0):>5} {figures.get('min', '-'):>9} "
                     f"{figures.get('median', '-'):>9} {figures.get('p99', '-'):>9} "
                     f"{figures.get('max', '-'):>9}")

    lines.append(f"{'':<44} {'n':>5} {'min':>9} {'median':>9} {'p99':>9} {'max':>9}  (ms)")
    pages_ = [("fleet", results["fleet"])] + \
        [(f"app {name}", figures) for name, figures in results["detail"].items()]
    for page, figures in pages_:
        for kind in ("cold", "warm"):
            size = figures[kind]["bytes"]
            row(f"GET {page} {kind}, client ({size // 1024} KiB)", figures[kind]["client_ms"])
            row(f"GET {page} {kind}, Server-Timing", figures[kind]["server_ms"])
    for run, what in (("sse_probe", "status patch"), ("sse_step", "step change")):
        for kind, figures in results[run].items():
            got = figures["ms"]["n"]
            row(f"SSE {kind}, {what}: patch to update", figures["ms"])
            lines.append(f"    {got} of {got + figures['missed']} deliveries arrived;"
                         f" median per change {figures['per_change']}")
    for when, key in (("caches filled", "memory_filled"), ("after the pages", "memory_measured"),
                      ("after the streams", "memory_after")):
        m = results[key]
        lines.append(f"prism serve memory, {when:<18} VmRSS {m['VmRSS']} MiB, VmHWM {m['VmHWM']} MiB")
    lines.append(f"fleet: {results['fleet_applications']} applications in all"
                 f" ({args.apps} of the benchmark's)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
