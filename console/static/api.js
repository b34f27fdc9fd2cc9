// Talking to the API: the session's tokens (sessionStorage: gone when the tab closes), JSON requests that refresh an
// expired access token once, uploads with progress, and the task event stream read with fetch (EventSource cannot send
// the Authorization header).

const ACCESS = "wlops.access";
const REFRESH = "wlops.refresh";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

export const session = {
  get access() { return sessionStorage.getItem(ACCESS); },
  get signedIn() { return Boolean(sessionStorage.getItem(ACCESS)); },
  keep(pair) {
    sessionStorage.setItem(ACCESS, pair.access_token);
    sessionStorage.setItem(REFRESH, pair.refresh_token);
  },
  clear() {
    sessionStorage.removeItem(ACCESS);
    sessionStorage.removeItem(REFRESH);
  },
};

// Called when the session cannot be renewed (the app sends the user to the login page).
let onSignedOut = () => {};
export function whenSignedOut(callback) { onSignedOut = callback; }

/** The API's `detail` in words: its message, or each invalid field and why. */
export function detailText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((e) => {
      const where = (e.loc || []).filter((part) => !["body", "query", "path"].includes(part)).join(".");
      return where ? `${where}: ${e.msg}` : e.msg;
    }).join("; ");
  }
  return `The API answered ${status} without saying why.`;
}

async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return new ApiError(response.status, detailText(body, response.status));
}

let refreshing = null;

/** Trade the refresh token for a new pair, once at a time however many requests found the access token expired. */
async function refreshSession() {
  const token = sessionStorage.getItem(REFRESH);
  if (!token) return false;
  refreshing ??= (async () => {
    try {
      const response = await fetch("/api/v1/auth/refresh", {method: "POST", headers: {"content-type": "application/json"},
                                                             body: JSON.stringify({refresh_token: token})});
      if (!response.ok) return false;
      session.keep(await response.json());
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => { refreshing = null; }, 0);
    }
  })();
  return refreshing;
}

function authHeaders(extra = {}) {
  const headers = {...extra};
  if (session.access) headers.authorization = `Bearer ${session.access}`;
  return headers;
}

async function signedOut(response) {
  const error = await errorFrom(response);
  session.clear();
  onSignedOut(error);
  return error;
}

/** A request with the session's token; on 401 the token is refreshed once and the request repeated. */
async function send(method, path, {json, query, headers = {}, signal} = {}) {
  const url = query ? `${path}?${new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""))}` : path;
  const init = () => ({method, signal, headers: authHeaders(json === undefined ? headers : {...headers, "content-type": "application/json"}),
                       body: json === undefined ? undefined : JSON.stringify(json)});
  let response = await fetch(url, init());
  if (response.status === 401 && session.signedIn) {
    if (await refreshSession()) response = await fetch(url, init());
    if (response.status === 401) throw await signedOut(response);
  }
  return response;
}

export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, query) => request("GET", path, {query});

/** Fetch a file with the session's token and hand it to the browser as a download named `filename`. */
export async function download(path, query, filename) {
  const response = await send("GET", path, {query});
  if (!response.ok) throw await errorFrom(response);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
}
export const post = (path, json) => request("POST", path, {json});

export async function login(username, password, org) {
  const response = await fetch("/api/v1/auth/login", {method: "POST", headers: {"content-type": "application/json"},
                                                      body: JSON.stringify({username, password, org: org || undefined})});
  if (!response.ok) throw await errorFrom(response);
  session.keep(await response.json());
}

export async function logout() {
  try {
    if (session.signedIn) await send("POST", "/api/v1/auth/logout");
  } finally {
    session.clear();
  }
}

export async function switchOrg(orgId) {
  session.keep(await post("/api/v1/auth/switch", {org_id: orgId}));
}

/** A multipart upload through XMLHttpRequest, whose upload events report progress: onProgress(sent, total). */
export function upload(path, form, onProgress) {
  const attempt = () => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    if (session.access) xhr.setRequestHeader("authorization", `Bearer ${session.access}`);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      resolve({status: xhr.status, body});
    });
    xhr.addEventListener("error", () => reject(new TypeError("network error")));
    xhr.send(form);
  });
  return (async () => {
    let result = await attempt();
    if (result.status === 401 && session.signedIn && await refreshSession()) result = await attempt();
    if (result.status >= 200 && result.status < 300) return result.body;
    const error = new ApiError(result.status, detailText(result.body, result.status));
    if (result.status === 401) { session.clear(); onSignedOut(error); }
    throw error;
  })();
}

/**
 * Read a text/event-stream with fetch, calling onEvent({id, event, data}) for each event (data parsed as JSON), and
 * reconnect with Last-Event-ID when the connection drops, until an event named in `until` arrives or `signal` aborts.
 * onState(text) hears about connecting, reconnecting and errors. Rejects with ApiError when the API refuses (404...).
 */
export async function streamEvents(path, {onEvent, onState = () => {}, signal, until = ["final"]}) {
  let lastId = null;
  let retryMs = 1000;
  let refreshed = false;
  while (!signal.aborted) {
    let response;
    try {
      const headers = authHeaders({accept: "text/event-stream"});
      if (lastId !== null) headers["last-event-id"] = lastId;
      onState(lastId === null ? "connecting" : "reconnecting");
      response = await fetch(path, {headers, signal, cache: "no-store"});
    } catch (error) {
      if (signal.aborted) return;
      onState("disconnected");
      await sleep(retryMs, signal);
      retryMs = Math.min(retryMs * 2, 15000);
      continue;
    }
    if (response.status === 401 && !refreshed && await refreshSession()) { refreshed = true; continue; }
    if (response.status === 401) throw await signedOut(response);
    if (!response.ok) throw await errorFrom(response);
    refreshed = false;
    retryMs = 1000;
    onState("live");
    let ended = false;
    try {
      for await (const event of parseEventStream(response.body, signal)) {
        if (event.retry) retryMs = event.retry;
        if (event.id !== undefined) lastId = event.id;
        if (!event.event && event.data === undefined) continue;
        let data = null;
        try { data = event.data ? JSON.parse(event.data) : null; } catch { data = event.data; }
        onEvent({id: event.id, event: event.event || "message", data});
        if (until.includes(event.event)) { ended = true; break; }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    if (ended) { onState("ended"); return; }
    if (signal.aborted) return;
    onState("disconnected");
    await sleep(retryMs, signal);
  }
}

/** The events of an SSE body (the WHATWG parsing rules: fields, multi-line data, comments, any line ending). */
async function* parseEventStream(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const abort = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", abort, {once: true});
  let buffer = "";
  let event = {};
  let data = [];
  try {
    while (true) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length || event.event || event.id !== undefined) yield {...event, data: data.length ? data.join("\n") : undefined};
          event = {};
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;  // a comment: the server's keep-alive
        const colon = line.indexOf(":");
        const name = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "data") data.push(value);
        else if (name === "event") event.event = value;
        else if (name === "id" && !value.includes("\0")) event.id = value;
        else if (name === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
      }
    }
  } finally {
    signal.removeEventListener("abort", abort);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
  });
}
