// The console's entry point: the hash router, the header (who is signed in, switching organization, logging out) and
// the login page. Each page is a function of the route that renders into <main>; the API decides what is allowed.

import {get, login, logout, session, switchOrg, whenSignedOut} from "./api.js";
import {clearMessages, field, flash, h, messageOf, navigate, render, setTitle, showError} from "./dom.js";
import {datasetPage, datasetsPage} from "./datasets.js";
import {knowledgeBasePage, knowledgePage, modelPage, modelsPage, qaPage} from "./registry.js";
import {lineagePage} from "./lineage.js";
import {releasePage} from "./releases.js";
import {suitePage, suiteRunPage, suitesPage} from "./suites.js";
import {newTaskPage, reportPage, taskPage, tasksPage} from "./tasks.js";

const ROUTES = [
  [/^\/login$/, loginPage, {public: true}],
  [/^\/tasks$/, tasksPage],
  [/^\/tasks\/new$/, newTaskPage],
  [/^\/tasks\/([^/]+)$/, taskPage],
  [/^\/tasks\/([^/]+)\/report$/, reportPage],
  [/^\/datasets$/, datasetsPage],
  [/^\/datasets\/([^/]+)$/, datasetPage],
  [/^\/knowledge$/, knowledgePage],
  [/^\/knowledge\/([^/]+)$/, knowledgeBasePage],
  [/^\/models$/, modelsPage],
  [/^\/models\/([^/]+)$/, modelPage],
  [/^\/models\/([^/]+)\/releases\/([^/]+)$/, releasePage],
  [/^\/suites$/, suitesPage],
  [/^\/suites\/([^/]+)$/, suitePage],
  [/^\/suites\/([^/]+)\/runs\/([^/]+)$/, suiteRunPage],
  [/^\/qa$/, qaPage],
  [/^\/lineage\/([a-z_]+)\/([^/]+)$/, lineagePage],
];

let me = null;  // GET /api/v1/auth/me for the current session
let current = null;  // the AbortController of the page on screen (ends its event stream when the page changes)

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/tasks";
  const [path, search = ""] = raw.split("?");
  return {path, query: new URLSearchParams(search)};
}

async function route() {
  if (!location.hash.startsWith("#/")) {
    if (!location.hash) location.replace("#/tasks");
    return;  // e.g. the skip link's #main: not a page
  }
  const {path, query} = parseHash();
  const found = ROUTES.map(([pattern, page, options = {}]) => [path.match(pattern), page, options]).find(([m]) => m);
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  clearMessages();
  if (!found) {
    setTitle("Page not found");
    render(h("h1", {}, "Page not found"), h("p", {}, "There is no such page in the console. "), h("a", {href: "#/tasks"}, "Go to the tasks"));
    return;
  }
  const [match, page, options] = found;
  if (!options.public && !session.signedIn) {
    location.replace(`#/login?next=${encodeURIComponent(location.hash.slice(1))}`);
    return;
  }
  document.getElementById("main").replaceChildren(h("p", {class: "hint"}, "Loading…"));  // never the last page's content under this one's error
  try {
    if (session.signedIn && !me) {
      me = await get("/api/v1/auth/me");
    }
    showSession();
    markSection(path);
    await page({params: match.slice(1).map(decodeURIComponent), query, signal, me});
  } catch (error) {
    if (signal.aborted) return;
    showError(error);
    if (!document.querySelector("#main h1")) render(h("h1", {}, "Something went wrong"), h("p", {}, messageOf(error)));
  }
}

function markSection(path) {
  const section = path.split("/")[1];
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showSession() {
  const signedIn = Boolean(me) && session.signedIn;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("session").hidden = !signedIn;
  if (!signedIn) return;
  const several = me.organizations.length > 1;
  document.getElementById("who").textContent = several ? `${me.username} · ${me.role}` : `${me.username} · ${me.role} in ${me.org_name}`;
  document.getElementById("org-select").replaceChildren(...me.organizations.map((org) =>
    h("option", {value: org.org_id, selected: org.org_id === me.org_id}, `${org.org_name} (${org.role})`)));
  document.getElementById("org-switch").hidden = !several;  // nothing to switch to
}

// --- the login page --------------------------------------------------------------------------------

async function loginPage({query}) {
  setTitle("Log in");
  me = null;
  showSession();
  const username = h("input", {name: "username", autocomplete: "username", required: true, maxlength: 64});
  const password = h("input", {name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: 1024});
  const org = h("input", {name: "org", autocomplete: "organization", maxlength: 100});
  const submit = h("button", {type: "submit"}, "Log in");
  const form = h("form", {class: "card narrow", "aria-labelledby": "login-heading"},
    field("Username", username),
    field("Password", password),
    field("Organization (optional)", org, "Needed only if you belong to several: its name or id."),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    submit.disabled = true;
    try {
      await login(username.value.trim(), password.value, org.value.trim());
      me = await get("/api/v1/auth/me");
      const next = query.get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("/login") ? `#${next}` : "#/tasks");
    } catch (error) {
      showError(error);
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  render(h("h1", {id: "login-heading"}, "Log in to WLOps"), form,
         h("p", {class: "hint"}, "Your session lasts until you log out or close this tab."));
}

// --- the header: switching organization and logging out --------------------------------------------

document.getElementById("org-switch").addEventListener("submit", async (event) => {
  event.preventDefault();
  const orgId = document.getElementById("org-select").value;
  if (!me || orgId === me.org_id) return;
  try {
    await switchOrg(orgId);
    me = await get("/api/v1/auth/me");
    flash({notice: `Now working in ${me.org_name} as ${me.role}.`});
    navigate("#/tasks");  // ids on screen belong to the organization left
  } catch (error) {
    showError(error);
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await logout();
  } catch {
    // the tokens are gone from this tab either way
  }
  me = null;
  flash({notice: "You are logged out."});
  navigate("#/login");
});

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();  // the hash belongs to the router
  document.getElementById("main").focus();
});

whenSignedOut(() => {
  me = null;
  current?.abort();
  flash({error: "Your session has ended: log in again."});
  navigate(`#/login?next=${encodeURIComponent(parseHash().path)}`);
});

window.addEventListener("hashchange", route);
route();
