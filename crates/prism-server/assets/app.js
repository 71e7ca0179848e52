// Prism's UI: the signed-in user, sign-in, and the hash routes
//   #/                                        the fleet
//   #/namespaces/{ns}/applications/{name}     one application
import { ApiError, signIn, signOut, whoami } from "./js/api.js";
import { h } from "./js/dom.js";
import { mountFleet } from "./js/fleet.js";
import { mountApplication } from "./js/application.js";

const main = document.getElementById("main");
const userLabel = document.querySelector('[data-testid="user"]');
const signOutButton = document.querySelector('[data-testid="signout"]');
const connection = document.querySelector('[data-testid="connection"]');

let unmount = null;

const CONNECTION_TEXT = { live: "● live", reconnecting: "◌ reconnecting…", offline: "○ offline" };

// What pages share: the connection indicator and what a failed request means.
const context = {
  connection(state) {
    // Set only on a change: it is a live region, and every update reports "live" again.
    if (connection.dataset.state === state) return;
    connection.textContent = CONNECTION_TEXT[state] || "";
    connection.dataset.state = state;
  },
  failure(error) {
    if (error.status === 401) showSignIn();
    else showError(error);
  },
};

function route() {
  if (unmount) unmount();
  unmount = null;
  context.connection("");
  const hash = location.hash || "#/";
  const app = hash.match(/^#\/namespaces\/([^/]+)\/applications\/([^/]+)$/);
  if (app) {
    const [namespace, name] = [decodeURIComponent(app[1]), decodeURIComponent(app[2])];
    document.title = `${namespace}/${name} · Prism`;
    unmount = mountApplication(main, { namespace, name }, context);
  } else if (hash === "#/" || hash === "#") {
    document.title = "Fleet · Prism";
    unmount = mountFleet(main, context);
  } else {
    showError(new ApiError(404, `There is no page ${hash}.`));
  }
}

function showError(error) {
  if (unmount) unmount();
  unmount = null;
  const title = error.status === 403 ? "Not allowed" : error.status === 404 ? "Not found" : "Something went wrong";
  main.replaceChildren(
    h("section", { class: "notice tone-bad", role: "alert", "data-testid": "error" },
      h("h1", {}, title),
      h("p", {}, error.message),
      h("p", {}, h("a", { href: "#/" }, "Back to the fleet"))));
}

function showSignIn() {
  if (unmount) unmount();
  unmount = null;
  context.connection("");
  userLabel.textContent = "";
  signOutButton.hidden = true;
  const input = h("input", {
    id: "signin-token", type: "password", name: "token", required: true,
    autocomplete: "current-password", "data-testid": "signin-token",
  });
  // Only a refused sign-in carries the `error` test id: tests wait for it to appear.
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Prism"),
    h("p", {}, "Paste a bearer token of the Kubernetes management cluster (for example from ",
      h("code", {}, "kubectl create token"), "). Prism keeps it in a session cookie."),
    h("label", { for: "signin-token" }, "Token"),
    input,
    error,
    h("button", { type: "submit", class: "button primary", "data-testid": "signin-submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await signIn(input.value.trim());
      await start();
    } catch (failed) {
      error.dataset.testid = "error";
      error.textContent = failed.status === 401 ? `The token was refused: ${failed.message}` : failed.message;
      button.disabled = false;
      input.focus();
      input.select();
    }
  });
  main.replaceChildren(form);
  input.focus();
}

async function start() {
  let user;
  try {
    user = await whoami();
  } catch (error) {
    if (error.status === 401) showSignIn();
    else showError(error);
    return;
  }
  userLabel.textContent = user.mode === "dashboard" ? `${user.user} (local dashboard)` : user.user;
  userLabel.title = (user.groups || []).join(", ");
  signOutButton.hidden = user.mode !== "serve";
  route();
}

signOutButton.addEventListener("click", async () => {
  try {
    await signOut();
    showSignIn();
  } catch (error) {
    showError(error);
  }
});

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

start();
