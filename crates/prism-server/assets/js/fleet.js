// The fleet page: clusters, the applications rolling out now and the rest, failing pods.
import { followPage } from "./page.js";
import { age, appHref, badge, bar, h, when } from "./dom.js";

export function mountFleet(main, context) {
  const page = followPage(main, { name: "fleet", path: "/api/v1/fleet", context, view: fleetPage });
  return page.stop;
}

function fleetPage(fleet) {
  const applications = fleet.applications || [];
  const rolling = applications.filter((app) => app.rollingOut);
  const settled = applications.filter((app) => !app.rollingOut);
  const failing = fleet.failingPods || [];
  return h("div", { class: "page", "data-page": "fleet" },
    h("h1", { class: "visually-hidden" }, "Fleet"),
    clustersSection(fleet.clusters),
    h("section", { class: "panel", "aria-labelledby": "rolling-title", "data-testid": "rolling-out" },
      h("h2", { id: "rolling-title" }, "Rolling out now ", h("span", { class: "count" }, rolling.length)),
      rolling.length
        ? applicationTable(rolling, "rolling")
        : h("p", { class: "empty" }, "No application is rolling out.")),
    h("section", { class: "panel", "aria-labelledby": "apps-title", "data-testid": "applications" },
      h("h2", { id: "apps-title" }, rolling.length ? "Other applications " : "Applications ",
        h("span", { class: "count" }, settled.length)),
      settled.length
        ? applicationTable(settled, "settled")
        : h("p", { class: "empty" }, applications.length ? "Every application is rolling out." : "No applications you may read.")),
    failingPodsSection(failing));
}

function clustersSection(clusters) {
  return h("section", { class: "panel", "aria-labelledby": "clusters-title", "data-testid": "fleet-clusters" },
    h("h2", { id: "clusters-title" }, "Clusters ", clusters ? h("span", { class: "count" }, clusters.length) : null),
    clusters === null || clusters === undefined
      ? h("p", { class: "empty" }, "You may not list the fleet's Clusters.")
      : clusters.length === 0
        ? h("p", { class: "empty" }, "No clusters have joined: the management cluster runs every application.")
        : h("ul", { class: "cluster-cards" }, clusters.map(clusterCard)));
}

function clusterCard(cluster) {
  const place = [cluster.region, cluster.zone].filter(Boolean).join(" / ");
  return h("li", { class: `cluster-card`, "data-testid": `cluster-${cluster.name}` },
    h("div", { class: "cluster-head" },
      h("h3", {}, cluster.name),
      badge(cluster.state),
      // Said once: the state may already name it ("Ready,Cordoned").
      cluster.unschedulable && !/cordoned/i.test(cluster.state || "") ? h("span", { class: "badge tone-warn" }, "cordoned") : null),
    h("p", { class: "cluster-place" }, place || "no region"),
    h("p", { class: "cluster-counts" },
      `${cluster.applications} application${cluster.applications === 1 ? "" : "s"} · `,
      `${cluster.versions} version${cluster.versions === 1 ? "" : "s"}`,
      cluster.weight !== 100 ? ` · weight ${cluster.weight}` : ""),
    bar(cluster.readyReplicas, cluster.replicas, `${cluster.readyReplicas}/${cluster.replicas} ready`),
    h("p", { class: "cluster-meta" },
      cluster.kubernetesVersion || "version unknown",
      " · ",
      h("span", { title: when(cluster.lastSeen) }, cluster.lastSeen ? `seen ${age(cluster.lastSeen)} ago` : "never seen")));
}

function applicationTable(applications, kind) {
  return h("div", { class: "table-scroll" },
    h("table", { class: "apps" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Application"),
        h("th", { scope: "col" }, "Release"),
        h("th", { scope: "col" }, "Phase"),
        h("th", { scope: "col" }, "Step"),
        kind === "rolling" ? h("th", { scope: "col" }, "Waiting for") : null,
        h("th", { scope: "col" }, "Ready"),
        h("th", { scope: "col" }, "Failing pods"))),
      h("tbody", {}, applications.map((app) => applicationRow(app, kind)))));
}

export function stepText(step, steps, stepName) {
  if (step === null || step === undefined) return steps ? `${steps} steps` : "—";
  return `step ${step + 1}/${steps}${stepName ? ` "${stepName}"` : ""}`;
}

function applicationRow(app, kind) {
  return h("tr", { "data-testid": `app-row-${app.namespace}-${app.name}` },
    h("th", { scope: "row" },
      h("a", { href: appHref(app.namespace, app.name) },
        h("span", { class: "namespace" }, `${app.namespace}/`), app.name)),
    h("td", {}, app.release || "—"),
    h("td", {}, badge(app.releasePhase || app.phase),
      app.abortedBecause ? h("div", { class: "why tone-text-bad" }, `aborted: ${app.abortedBecause}`) : null),
    h("td", {}, stepText(app.step, app.steps, app.stepName)),
    kind === "rolling" ? h("td", { class: "waiting" }, app.waitingFor || "—") : null,
    h("td", {}, bar(app.readyReplicas, app.replicas, `${app.readyReplicas}/${app.replicas}`)),
    h("td", { class: "number" },
      app.failingPods ? h("span", { class: "badge tone-bad" }, `${app.failingPods} failing`) : h("span", { class: "muted" }, "none")));
}

export function failingPodsSection(pods, { title = "Failing pods", showApplication = true } = {}) {
  return h("section", { class: "panel", "aria-labelledby": "failing-title", "data-testid": "failing-pods" },
    h("h2", { id: "failing-title" }, `${title} `, h("span", { class: `count${pods.length ? " tone-bad" : ""}` }, pods.length)),
    pods.length === 0
      ? h("p", { class: "empty" }, "No failing pods.")
      : h("div", { class: "table-scroll" },
        h("table", { class: "pods" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Cluster"),
            showApplication ? h("th", { scope: "col" }, "Application") : null,
            h("th", { scope: "col" }, "Pod"),
            h("th", { scope: "col" }, "Reason"),
            h("th", { scope: "col" }, "Message"),
            h("th", { scope: "col" }, "Since"))),
          h("tbody", {}, pods.map((pod) => failingPodRow(pod, showApplication))))));
}

function failingPodRow(pod, showApplication) {
  return h("tr", { "data-testid": `failing-pod-${pod.cluster}-${pod.pod}` },
    h("td", {}, pod.cluster),
    showApplication
      ? h("td", {}, h("a", { href: appHref(pod.namespace, pod.application) }, `${pod.namespace}/${pod.application}`))
      : null,
    h("td", { class: "mono" }, pod.pod,
      pod.release ? h("div", { class: "muted" }, pod.release) : null),
    h("td", {}, badge(pod.reason),
      pod.restarts ? h("div", { class: "muted" }, `${pod.restarts} restart${pod.restarts === 1 ? "" : "s"}`) : null),
    h("td", { class: "message" }, pod.container ? `${pod.container}: ` : "", pod.message || ""),
    h("td", { title: when(pod.since) }, pod.since ? age(pod.since) : "—"));
}
