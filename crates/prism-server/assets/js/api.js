// The HTTP API (docs: /api/v1/openapi.json). Requests carry the session cookie; errors become
// ApiError with the server's status and message for people.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    // The server refuses POSTs without this type (its CSRF protection).
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, `The Prism server cannot be reached (${error.message}).`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || text || response.statusText;
    throw new ApiError(response.status, message);
  }
  return data;
}

export const getJson = (path) => request("GET", path);
export const postJson = (path, body) => request("POST", path, body);
export const signIn = (token) => request("POST", "/api/v1/session", { token });
export const signOut = () => request("DELETE", "/api/v1/session");
export const whoami = () => request("GET", "/api/v1/whoami");

// Keeps a page live: GET `path` once (its errors carry a status, unlike an EventSource's), then
// follow `path + "/stream"`. `update(data)` gets every new state, `failure(ApiError)` the end
// (lost access, deleted), `state(text)` the connection: "live", "reconnecting", "offline".
// Returns a function that stops it.
export function live(path, { update, failure, state }) {
  let source = null;
  let stopped = false;
  let retryTimer = null;
  let retryDelay = 1000;

  async function refetch() {
    try {
      update(await getJson(path));
      return true;
    } catch (error) {
      if (stopped) return false;
      if (error.status === 0 || error.status >= 500) {
        state("offline");
        return true;
      }
      failure(error);
      return false;
    }
  }

  function open() {
    if (stopped) return;
    source = new EventSource(`${path}/stream`);
    source.addEventListener("open", () => {
      retryDelay = 1000;
      state("live");
    });
    source.addEventListener("update", (event) => {
      state("live");
      update(JSON.parse(event.data));
    });
    source.addEventListener("error", async (event) => {
      if (event.data) {
        // The server's own `event: error`: access lost or the application deleted.
        const body = JSON.parse(event.data);
        stop();
        failure(new ApiError(body.status, body.error));
        return;
      }
      if (source.readyState !== EventSource.CLOSED) {
        state("reconnecting");
        return;
      }
      // The browser gave up (an HTTP error such as 401): ask the API why, then try again.
      state("offline");
      source = null;
      if (await refetch()) {
        retryTimer = setTimeout(open, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 10000);
      }
    });
  }

  function stop() {
    stopped = true;
    clearTimeout(retryTimer);
    if (source) source.close();
  }

  refetch().then((ok) => ok && open());
  return stop;
}
