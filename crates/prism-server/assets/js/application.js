// The application page: is it rolling out, where does it run, its steps, analysis, versions,
// releases, events and failing pods; and the actions this caller may take.
import { followPage } from "./page.js";
import { age, badge, bar, duration, h, when } from "./dom.js";
import { failingPodsSection, stepText } from "./fleet.js";
import { analysisSection } from "./charts.js";
import { runAction } from "./actions.js";

export function mountApplication(main, { namespace, name }, context) {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/applications/${encodeURIComponent(name)}`;
  let result = null;
  const page = followPage(main, {
    name: "application",
    path,
    context,
    view: (app) => applicationPage(app, result),
  });
  const report = (text, tone) => {
    result = { text, tone };
    page.render();
  };
  const onClick = (event) => {
    const button = event.target.closest("[data-action]");
    const app = page.current();
    if (button && app) runAction(button.dataset.action, app, path, report);
  };
  main.addEventListener("click", onClick);
  return () => {
    page.stop();
    main.removeEventListener("click", onClick);
  };
}

function applicationPage(app, result) {
  const { summary } = app;
  return h("div", { class: "page", "data-page": "application" },
    h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" },
      h("a", { href: "#/" }, "Fleet"), " › ", h("span", { "aria-current": "page" }, `${summary.namespace}/${summary.name}`)),
    headline(app, result),
    h("div", { class: "app-layout" },
      h("div", { class: "app-main" },
        gridSection(app.grid || []),
        timelineSection(app.timeline || []),
        failingPodsSection(byCluster(app.failingPods || []), { title: "Failing pods", showApplication: false }),
        analysisSection(app.analysis)),
      h("div", { class: "app-side" },
        versionsSection(app.versions || []),
        eventsSection(app.events || []),
        releasesSection(app.releases || []))));
}

function headline(app, result) {
  const { summary, rollout } = app;
  const rolling = summary.rollingOut;
  let title;
  if (!rollout) title = "No release yet";
  else if (rolling) title = `Rolling out ${rollout.release}`;
  else title = `Running ${rollout.release}`;
  return h("section", { class: `headline ${rolling ? "is-rolling" : ""}`, "data-testid": "app-headline", "aria-labelledby": "app-title" },
    h("div", { class: "headline-text" },
      h("p", { class: "app-name" }, h("span", { class: "namespace" }, `${summary.namespace}/`), summary.name,
        summary.phase ? [" ", badge(summary.phase)] : null,
        summary.strategy ? h("span", { class: "muted" }, ` · ${summary.strategy}`) : null),
      h("h1", { id: "app-title" }, title,
        rollout ? [" ", h("span", { class: "muted" }, `revision ${rollout.revision}`), " ", badge(rollout.phase)] : null),
      rollout
        ? h("p", { class: "step-line" },
          h("span", { class: "step", "data-testid": "app-step" }, stepText(rollout.step, rollout.steps, null)),
          rollout.stepName ? h("span", { class: "step-name" }, ` "${rollout.stepName}"`) : null,
          rollout.achievedAt ? h("span", { class: "muted", title: when(rollout.achievedAt) }, ` · achieved ${age(rollout.achievedAt)} ago`) : null)
        : null,
      rollout && rollout.waitingFor
        ? h("p", { class: "waiting-for", "data-testid": "app-waiting" }, h("strong", {}, "Waiting for "), rollout.waitingFor)
        : null,
      rollout && rollout.abortedBecause
        ? h("p", { class: "alert tone-bad", "data-testid": "app-aborted" }, h("strong", {}, "Aborted: "), rollout.abortedBecause)
        : null,
      rollout && rollout.writesRefused
        ? h("p", { class: "alert tone-warn" }, h("strong", {}, "Writes refused: "), rollout.writesRefused)
        : null,
      rollout && rollout.analysis ? h("p", { class: "muted" }, `Analysis: ${rollout.analysis}`) : null),
    actionsBar(app, result));
}

function actionsBar(app, result) {
  const allowed = app.allowed || {};
  const rollout = app.rollout;
  const buttons = [];
  if (allowed.promote && rollout) {
    buttons.push(h("button", { type: "button", class: "button primary", "data-action": "promote", "data-testid": "promote" }, "Promote"));
    buttons.push(h("button", { type: "button", class: "button", "data-action": "promote-full", "data-testid": "promote-full" }, "Promote fully"));
  }
  if (allowed.abort && rollout) {
    buttons.push(h("button", { type: "button", class: "button danger", "data-action": "abort", "data-testid": "abort" }, "Abort"));
  }
  if (allowed.rollback) {
    buttons.push(h("button", { type: "button", class: "button danger", "data-action": "rollback", "data-testid": "rollback" }, "Rollback…"));
  }
  return h("div", { class: "actions" },
    buttons.length ? h("div", { class: "action-buttons", role: "group", "aria-label": "Actions" }, buttons) : null,
    // Always present, so screen readers hear what is put in it.
    h("p", {
      class: `action-result${result ? ` tone-${result.tone}` : ""}`, role: "status", "aria-live": "polite",
      "data-testid": "action-result",
    }, result ? result.text : ""));
}

function gridSection(grid) {
  const clusters = [...new Set(grid.map((cell) => cell.cluster))].sort();
  const releases = [...new Map(grid.map((cell) => [cell.release, cell.revision]))]
    .sort((a, b) => b[1] - a[1]).map(([release]) => release);
  const cells = new Map(grid.map((cell) => [`${cell.cluster}\u0000${cell.release}`, cell]));
  return h("section", { class: "panel", "aria-labelledby": "grid-title", "data-testid": "grid" },
    h("h2", { id: "grid-title" }, "Where it runs"),
    grid.length === 0
      ? h("p", { class: "empty" }, "No version runs in any cluster.")
      : h("div", { class: "table-scroll" },
        h("table", { class: "grid" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Cluster"),
            releases.map((release) => h("th", { scope: "col" }, release)))),
          h("tbody", {}, clusters.map((cluster) =>
            h("tr", { "data-key": `grid-row-${cluster}` },
              h("th", { scope: "row" }, cluster),
              releases.map((release) => gridCell(cluster, release, cells.get(`${cluster}\u0000${release}`)))))))));
}

function gridCell(cluster, release, cell) {
  if (!cell) return h("td", { class: "grid-cell empty-cell", "data-testid": `grid-cell-${cluster}-${release}` }, h("span", { class: "muted" }, "not here"));
  const progress = cell.achievedStep === null || cell.achievedStep === undefined
    ? null : `achieved ${cell.achievedStep + 1}/${cell.steps}`;
  return h("td", { class: "grid-cell", "data-testid": `grid-cell-${cluster}-${release}` },
    h("div", { class: "cell-head" },
      cell.role ? badge(cell.role) : null, " ", badge(cell.phase),
      progress ? h("span", { class: "muted" }, ` ${progress}`) : null),
    h("div", { class: "cell-bars" },
      h("span", { class: "bar-label" }, "capacity"),
      bar(cell.readyReplicas, cell.replicas, `${cell.readyReplicas}/${cell.replicas} ready`),
      h("span", { class: "bar-label" }, "traffic"),
      bar(cell.weight, 100, `${cell.weight}%`, "info")),
    cell.message ? h("p", { class: "cell-message" }, cell.message) : null);
}

const STEP_STATE_TEXT = { done: "✓ done", current: "▶ current", pending: "pending", failed: "✗ failed" };

function timelineSection(timeline) {
  return h("section", { class: "panel", "aria-labelledby": "timeline-title", "data-testid": "timeline" },
    h("h2", { id: "timeline-title" }, "Steps"),
    timeline.length === 0
      ? h("p", { class: "empty" }, "No steps.")
      : h("ol", { class: "timeline" }, timeline.map((step) =>
        h("li", {
          class: `timeline-step state-${step.state}`, "data-testid": `timeline-step-${step.index}`, "data-state": step.state,
          "aria-current": step.state === "current" ? "step" : false,
        },
        h("p", { class: "step-label" }, step.label),
        h("p", { class: "step-state" }, STEP_STATE_TEXT[step.state] || step.state,
          step.achievedAt ? h("span", { class: "muted", title: when(step.achievedAt) }, ` ${age(step.achievedAt)} ago`) : null),
        h("p", { class: "step-what" },
          [step.capacity ? `${step.capacity} capacity` : null, step.weight !== null && step.weight !== undefined ? `${step.weight}% traffic` : null]
            .filter(Boolean).join(" · ") || "—"),
        step.gate ? h("p", { class: "step-gate" }, `gate: ${step.gate}`) : null,
        step.waitsFor ? h("p", { class: "step-waits" }, h("strong", {}, "waits for "), step.waitsFor) : null))));
}

function versionsSection(versions) {
  return h("section", { class: "panel", "aria-labelledby": "versions-title", "data-testid": "versions" },
    h("h2", { id: "versions-title" }, "Live versions ", h("span", { class: "count" }, versions.length)),
    versions.length === 0
      ? h("p", { class: "empty" }, "No live versions.")
      : h("ul", { class: "versions" }, versions.map((version) =>
        h("li", { class: "version", "data-testid": `version-${version.version}` },
          h("div", { class: "version-head" },
            h("strong", {}, version.version), " ", badge(version.role),
            version.pinned ? h("span", { class: "badge tone-info" }, "pinned") : null,
            version.ttlLeftSeconds !== null && version.ttlLeftSeconds !== undefined
              ? h("span", { class: "muted" }, ` expires in ${duration(version.ttlLeftSeconds)}`) : null),
          h("p", { class: "muted" },
            version.revision ? `revision ${version.revision}` : "side version",
            version.created ? ` · created ${age(version.created)} ago` : "",
            " · ", (version.clusters || []).map((c) => `${c.name} ${c.ready}/${c.desired}`).join(", ") || "no clusters"),
          (version.routes || []).length
            ? h("ul", { class: "routes" }, version.routes.map(routeItem))
            : h("p", { class: "muted" }, "no routes")))));
}

// "http://web.example.com/ -H 'x-version: web-2'": the URL is a link, the rest what to send with it.
// Without an HTTPRoute hostname the server says `<host>`: no link, then.
function routeItem(route) {
  const [url, ...rest] = route.split(" ");
  const link = /^https?:\/\//.test(url) && !url.includes("<host>")
    ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url)
    : h("code", { title: "no HTTPRoute hostname is known: the path on any of the application's hosts" }, url);
  return h("li", {}, link, rest.length ? h("code", {}, ` ${rest.join(" ")}`) : null);
}

function eventsSection(events) {
  return h("section", { class: "panel", "aria-labelledby": "events-title", "data-testid": "events" },
    h("h2", { id: "events-title" }, "Events"),
    events.length === 0
      ? h("p", { class: "empty" }, "No events.")
      : h("ol", { class: "events" }, newestFirst(events).map((event) =>
        h("li", { class: `event ${event.type === "Warning" ? "warning" : ""}` },
          h("p", { class: "event-head" },
            event.type === "Warning" ? h("span", { class: "badge tone-warn" }, "Warning") : null,
            h("strong", {}, event.reason), " ",
            h("span", { class: "muted" }, event.object),
            h("span", { class: "event-age", title: when(event.time) },
              `${age(event.time)} ago${event.count > 1 ? ` · ×${event.count}` : ""}`)),
          h("p", { class: "event-message" }, event.message)))));
}

function releasesSection(releases) {
  const newestFirst = [...releases].sort((a, b) => b.revision - a.revision);
  return h("section", { class: "panel", "aria-labelledby": "releases-title", "data-testid": "releases" },
    h("h2", { id: "releases-title" }, "Release history"),
    releases.length === 0
      ? h("p", { class: "empty" }, "No releases.")
      : h("div", { class: "table-scroll" },
        h("table", { class: "releases" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Rev"), h("th", { scope: "col" }, "Release and images"), h("th", { scope: "col" }, "Phase"),
            h("th", { scope: "col" }, "Created"))),
          h("tbody", {}, newestFirst.map((release) =>
            h("tr", { "data-testid": `release-${release.revision}` },
              h("td", { class: "number" }, release.revision),
              h("td", {}, release.name, release.role ? [" ", badge(release.role)] : null,
                (release.images || []).map((image) => h("div", { class: "mono muted image" }, image))),
              h("td", {}, badge(release.phase), release.progress ? h("span", { class: "muted" }, ` ${release.progress}`) : null),
              h("td", { title: when(release.created) }, release.created ? `${age(release.created)} ago` : "—")))))));
}

// The API sends them newest first already; a stable sort keeps that promise here too.
function newestFirst(events) {
  return [...events].sort((a, b) => (Date.parse(b.time) || 0) - (Date.parse(a.time) || 0));
}

function byCluster(pods) {
  return [...pods].sort((a, b) => a.cluster.localeCompare(b.cluster) || a.pod.localeCompare(b.pod));
}
