// Promote, abort and rollback: each asks for confirmation in a modal <dialog> (the browser keeps
// focus inside it and closes it on Escape), then POSTs and reports the server's answer.
import { postJson } from "./api.js";
import { h } from "./dom.js";

// Asks for confirmation; resolves to the dialog's `read()` value (true without one) when
// confirmed, null when cancelled.
export function confirmDialog({ title, text, confirmLabel, tone = "primary", extra = null, read = () => true }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm-dialog", "aria-labelledby": "dialog-title", "aria-describedby": "dialog-text" },
      h("form", { method: "dialog" },
        h("h2", { id: "dialog-title" }, title),
        h("p", { id: "dialog-text" }, text),
        extra,
        h("div", { class: "dialog-buttons" },
          h("button", { type: "submit", value: "cancel", class: "button", "data-testid": "cancel", autofocus: true }, "Cancel"),
          h("button", { type: "submit", value: "confirm", class: `button ${tone}`, "data-testid": "confirm" }, confirmLabel))));
    dialog.addEventListener("close", () => {
      const confirmed = dialog.returnValue === "confirm";
      const value = confirmed ? read() : null;
      dialog.remove();
      resolve(value);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// What each action asks and sends. `app` is the application page's data.
export const ACTIONS = {
  promote: {
    ask: (app) => ({
      title: `Promote ${app.rollout.release}?`,
      text: `It leaves step ${currentLabel(app)} for the next one now, without waiting for what the step waits for.`,
      confirmLabel: "Promote",
    }),
    send: (path) => postJson(`${path}/promote`, { full: false }),
  },
  "promote-full": {
    ask: (app) => ({
      title: `Promote ${app.rollout.release} fully?`,
      text: "It skips every remaining step and gate: the new version takes all capacity and traffic in every cluster.",
      confirmLabel: "Promote fully",
      tone: "warn",
    }),
    send: (path) => postJson(`${path}/promote`, { full: true }),
  },
  abort: {
    ask: (app) => ({
      title: `Abort ${app.rollout.release}?`,
      text: "The rollout stops and the controller moves capacity and traffic back to the version before it.",
      confirmLabel: "Abort rollout",
      tone: "danger",
    }),
    send: (path) => postJson(`${path}/abort`, {}),
  },
  rollback: {
    ask: (app) => {
      const select = h("select", { id: "rollback-to", "data-testid": "rollback-to" },
        h("option", { value: "" }, "the previous complete release"),
        rollbackChoices(app).map((release) =>
          h("option", { value: release.revision }, `revision ${release.revision}: ${release.name}${release.images?.length ? ` (${release.images.join(", ")})` : ""}`)));
      return {
        title: `Roll ${app.summary.namespace}/${app.summary.name} back?`,
        text: "A new release goes out with the template of the revision you choose.",
        confirmLabel: "Roll back",
        tone: "danger",
        extra: h("p", { class: "field" }, h("label", { for: "rollback-to" }, "Roll back to"), select),
        read: () => select.value,
      };
    },
    send: (path, choice) => postJson(`${path}/rollback`, choice === "" || choice === true ? {} : { to: Number(choice) }),
  },
};

function currentLabel(app) {
  const current = (app.timeline || []).find((step) => step.state === "current");
  return current ? current.label : `${app.rollout.step + 1}/${app.rollout.steps}`;
}

// The complete releases, newest first, other than the one running now.
export function rollbackChoices(app) {
  const current = app.summary.revision;
  return (app.releases || [])
    .filter((release) => release.phase === "Complete" && release.revision !== current)
    .sort((a, b) => b.revision - a.revision);
}

// Confirms and runs the action `name`; `report(text, tone)` shows the outcome.
export async function runAction(name, app, path, report) {
  const action = ACTIONS[name];
  const choice = await confirmDialog(action.ask(app));
  if (choice === null) return;
  report("Sending…", "info");
  try {
    const answer = await action.send(path, choice);
    report((answer && answer.message) || "Done.", "ok");
  } catch (error) {
    const prefix = error.status === 409 ? "Refused: " : error.status === 403 ? "Not allowed: " : "Failed: ";
    report(prefix + error.message, "bad");
  }
}
