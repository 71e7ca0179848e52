// A page that follows one API resource: rendered from its latest JSON on every update, and again
// every few seconds so that ages move on; patched onto the page on screen, never reloaded.
import { live } from "./api.js";
import { morph } from "./dom.js";

const AGE_REFRESH_MS = 10000;

// Follows `path`; `view(data)` builds the page, whose root has `data-page="<name>"`.
// Returns `render` (to draw again after a local change) and `stop`.
export function followPage(main, { name, path, context, view }) {
  let data = null;
  const render = () => {
    if (!data) return;
    const page = view(data);
    if (main.firstElementChild && main.firstElementChild.dataset.page === name) {
      morph(main.firstElementChild, page);
    } else {
      main.replaceChildren(page);
    }
  };
  const stopLive = live(path, {
    update(latest) {
      data = latest;
      render();
    },
    failure: context.failure,
    state: context.connection,
  });
  const timer = setInterval(render, AGE_REFRESH_MS);
  return {
    render,
    current: () => data,
    stop() {
      stopLive();
      clearInterval(timer);
    },
  };
}
