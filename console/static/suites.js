// Scenario suites, read only: each suite's latest version, a suite's cases and runs with the last two compared case by
// case, and a run's answer and verdict for every case. Suites are created and run through the API or `wlops suites`.

import {ApiError, get} from "./api.js";
import {PAGE, answer, facts, h, pager, render, setTitle, shortId, showError, statusBadge, table, when} from "./dom.js";

const enc = encodeURIComponent;
const ASSERTIONS = ["checks", "refusal", "max_latency_ms", "json_schema"];

/** The resource, or a page saying it was not found. */
async function orNotFound(path, what, back) {
  try {
    return await get(path);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    setTitle(`${what} not found`);
    render(h("h1", {}, `${what} not found`), h("p", {}, `${error.message}.`), h("p", {}, back));
    showError(error);
    return null;
  }
}

export async function suitesPage({query}) {
  setTitle("Suites");
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const list = await get("/api/v1/suites", {limit: PAGE, offset});
  render(h("h1", {}, "Suites"),
    h("p", {class: "hint"}, "Cases a model version must keep passing. A blocking suite that an alias requires refuses a promotion on any failing case."),
    table(`Suites: ${list.total}`, [
      ["Name", (s) => h("a", {href: `#/suites/${enc(s.name)}`}, s.name)],
      ["Version", (s) => s.version],
      ["Blocking", (s) => s.blocking ? "yes" : "no"],
      ["Cases", (s) => s.case_count],
      ["Content hash", (s) => shortId(s.content_hash)],
      ["Created", (s) => when(s.created_at)],
    ], list.items, {empty: "No suites yet: create one with the API or `wlops suites create`."}),
    pager("#/suites", {}, offset, list.total));
}

export async function suitePage({params: [name]}) {
  const path = `/api/v1/suites/${enc(name)}`;
  const suite = await orNotFound(path, "Suite", h("a", {href: "#/suites"}, "Back to the suites"));
  if (!suite) return;
  setTitle(suite.name);
  const runs = await get(`${path}/runs`, {limit: 200});
  const completed = runs.items.filter((r) => r.status === "COMPLETED");
  const comparison = completed.length >= 2 ? await get(`${path}/compare`) : null;
  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/suites"}, "Suites"), " / ", suite.name),
    h("h1", {}, suite.name),
    facts([["Version", suite.version], ["Content hash", h("code", {}, suite.content_hash)],
           ["Blocking", suite.blocking ? "yes: a failing case refuses a promotion" : "no"],
           ["Description", suite.description], ["Created", when(suite.created_at)]]),
    h("section", {"aria-labelledby": "cases-heading"}, h("h2", {id: "cases-heading"}, "Cases"),
      table(`Cases: ${suite.case_count}`, [
        ["Case", (c) => c.id],
        ["Asks", (c) => c.prompt ?? c.messages[c.messages.length - 1].content, {text: true}],
        ["Asserts", (c) => ASSERTIONS.filter((a) => c[a] !== undefined && c[a] !== false).join(", ")],
      ], suite.cases)),
    comparison ? h("section", {"aria-labelledby": "compare-heading"}, h("h2", {id: "compare-heading"}, "The last two runs, case by case"),
      h("p", {}, `${comparison.before.model} → ${comparison.after.model}: `,
        Object.entries(comparison.counts).map(([kind, n]) => `${n} ${kind.replace("_", " ")}`).join(", "),
        ` (exact McNemar p = ${comparison.p_value.toFixed(4)})`)) : null,
    h("section", {"aria-labelledby": "runs-heading"}, h("h2", {id: "runs-heading"}, "Runs"),
      table(`Runs: ${runs.total}, newest first`, [
        ["Run", (r) => h("a", {href: `#/suites/${enc(suite.name)}/runs/${enc(r.run_id)}`, "aria-label": `run ${r.run_id}`}, shortId(r.run_id))],
        ["Model", (r) => r.model],
        ["Suite version", (r) => r.suite_version],
        ["Status", (r) => statusBadge(r.status)],
        ["Passed", (r) => `${r.passed} of ${r.total}`],
        ["Gate", (r) => r.gate_id ? shortId(r.gate_id) : "—"],
        ["Started", (r) => when(r.created_at)],
      ], runs.items, {empty: "Not run yet: `wlops suites run` runs it against a model version."})));
}

export async function suiteRunPage({params: [name, runId]}) {
  const path = `/api/v1/suites/${enc(name)}/runs/${enc(runId)}`;
  const back = h("a", {href: `#/suites/${enc(name)}`}, `Back to the suite ${name}`);
  const run = await orNotFound(path, "Suite run", back);
  if (!run) return;
  setTitle(`${name}: run of ${run.model}`);
  const why = (c) => c.results.filter((a) => !a.passed).map((a) => h("div", {}, `${a.assertion}: ${a.detail}`));
  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/suites"}, "Suites"), " / ", h("a", {href: `#/suites/${enc(name)}`}, name), " / run"),
    h("h1", {}, `${name} v${run.suite_version} on ${run.model}`),
    facts([["Status", statusBadge(run.status)], ["Error", run.error], ["Passed", `${run.passed} of ${run.total}`],
           ["Content hash", h("code", {}, run.content_hash)], ["Started", when(run.created_at)], ["Finished", when(run.finished_at)]]),
    table(`Cases: ${run.results.length}`, [
      ["Case", (c) => c.case_id],
      ["Verdict", (c) => statusBadge(c.passed ? "PASSED" : "FAILED")],
      ["Answer", (c) => answer(c.answer), {text: true}],
      ["Why it failed", (c) => c.passed ? "—" : why(c), {text: true}],
      ["Latency", (c) => `${c.latency_ms} ms`],
    ], run.results, {empty: run.status === "RUNNING" ? "The model is still answering: reload in a moment." : "No answers."}));
}
