// Releases of a model's alias: the list on the model's page, and one release's page that shows its steps and every
// decision with its figures, live (it reads the release again every few seconds until it ends), with the controls the
// caller may use (pause, resume, abort; promote for models:force). The API and the release's workflow decide.

import {ApiError, get, post} from "./api.js";
import {can, facts, h, render, score, setTitle, shortId, showError, showNotice, statusBadge, table, when} from "./dom.js";

const enc = encodeURIComponent;
const ACTIVE = new Set(["PENDING", "RUNNING", "PAUSED"]);
const REFRESH_MS = 2000;

export function releaseHref(model, releaseId) {
  return `#/models/${enc(model)}/releases/${enc(releaseId)}`;
}

/** The model page's section: each release of its aliases, newest first. */
export function releasesSection(model, releases) {
  return h("section", {"aria-labelledby": "releases-heading"}, h("h2", {id: "releases-heading"}, "Releases"),
    table(`Releases: ${releases.total}, newest first`, [
      ["Release", (r) => h("a", {href: releaseHref(model, r.release_id), "aria-label": `release ${r.release_id}`}, shortId(r.release_id))],
      ["Alias", (r) => `${r.alias}: version ${r.current_version} → ${r.candidate_version}`],
      ["Steps", (r) => r.steps.map((w) => `${w}%`).join(" → ")],
      ["Candidate weight", (r) => `${r.candidate_weight}%`],
      ["Status", (r) => statusBadge(r.status)],
      ["Reason", (r) => r.reason || "—", {text: true}],
      ["Started", (r) => when(r.created_at)],
    ], releases.items, {empty: "No release yet: `wlops releases start` releases an alias to a version in steps."}));
}

/** One arm's figures in a line: requests, error rate, p95 latency, answers rated down. */
function arm(figures) {
  if (!figures) return "—";
  return `${figures.requests} requests · errors ${score(figures.error_rate ?? 0, 3)} · p95 ${figures.p95_latency_ms ?? "—"} ms · rated down ${score(figures.down_rate ?? 0, 3)}`;
}

/** The steps as a row of badges: done, underway (with the weight now), to come. */
function stepsLine(release) {
  return h("ol", {class: "release-steps", "aria-label": "steps"}, release.steps.map((weight, index) => {
    const state = index < release.step_index || release.status === "PROMOTED" ? "done"
      : index === release.step_index && ACTIVE.has(release.status) ? "underway" : "to come";
    return h("li", {class: `release-step step-${state.replace(" ", "-")}`}, `${weight}% (${state})`);
  }));
}

export async function releasePage({params: [name, releaseId], signal, me}) {
  const path = `/api/v1/models/${enc(name)}/releases/${enc(releaseId)}`;
  let release;
  try {
    release = await get(path);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    setTitle("Release not found");
    render(h("h1", {}, "Release not found"), h("p", {}, `${error.message}.`), h("p", {}, h("a", {href: `#/models/${enc(name)}`}, `Back to the model ${name}`)));
    showError(error);
    return;
  }
  const summary = h("div", {});
  const controls = h("div", {class: "controls"});
  const decisions = h("div", {});
  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/models"}, "Models"), " / ", h("a", {href: `#/models/${enc(name)}`}, name), " / release"),
    h("h1", {}, `Release of ${name}@${release.alias}: version ${release.current_version} → ${release.candidate_version}`),
    summary, controls,
    h("section", {"aria-labelledby": "decisions-heading"}, h("h2", {id: "decisions-heading"}, "Decisions"), decisions));

  function show() {
    setTitle(`${name}@${release.alias}: release ${release.status}`);
    summary.replaceChildren(facts([
      ["Status", statusBadge(release.status)],
      ["Reason", release.reason],
      ["Steps", stepsLine(release)],
      ["Candidate weight", `${release.candidate_weight}% of the alias's traffic`],
      ["Waits", `${release.thresholds.bake_seconds} s per step, then ${release.thresholds.min_requests} requests per version (at most ${release.thresholds.max_wait_seconds} s)`],
      ["Started", when(release.created_at)],
      ["Finished", when(release.finished_at)],
    ]));
    decisions.replaceChildren(table(`Decisions: ${release.decisions.length}, oldest first`, [
      ["When", (d) => when(d.at)],
      ["Decision", (d) => d.kind],
      ["Step", (d) => `${d.step_index + 1} of ${release.steps.length}`],
      ["Weight", (d) => `${d.candidate_weight}%`],
      ["Status", (d) => statusBadge(d.status)],
      ["Current version", (d) => arm(d.figures?.current), {text: true}],
      ["Candidate", (d) => arm(d.figures?.candidate), {text: true}],
      ["Reason", (d) => d.reason, {text: true}],
    ], release.decisions));
    renderControls();
  }

  function renderControls() {
    if (!can(me, "models:write") || !ACTIVE.has(release.status)) { controls.replaceChildren(); return; }
    const button = (action, label, enabled) => h("button", {type: "button", disabled: !enabled, onclick: () => act(action)}, label);
    const s = release.status;
    controls.replaceChildren(...[
      button("pause", "Pause", s === "RUNNING"),
      button("resume", "Resume", s === "PAUSED"),
      can(me, "models:force") ? button("promote", "Promote now", s !== "PENDING") : null,
      button("abort", "Abort", true)].filter(Boolean));
  }

  async function act(action) {
    for (const b of controls.querySelectorAll("button")) b.disabled = true;
    try {
      release = await post(`${path}/${action}`);
      showNotice(`Release ${release.status.toLowerCase()}.`);
    } catch (error) {
      showError(error);
    }
    show();
  }

  show();
  while (ACTIVE.has(release.status) && !signal.aborted) {
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
    if (signal.aborted) return;
    try {
      release = await get(path);
    } catch (error) {
      showError(error);
      return;
    }
    show();
  }
}
