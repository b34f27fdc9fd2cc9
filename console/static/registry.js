// Read-only pages: knowledge bases and their documents, registered models with their versions, aliases and the promotion
// gate's decisions, and the QA history of the serving process with a feedback button on each answer.

import {lineageHref} from "./lineage.js";
import {ApiError, get, post} from "./api.js";
import {PAGE, answer, bytes, can, facts, field, flash, h, navigate, pager, render, score, setTitle, shortId, showError, showNotice, signed, statusBadge, table, when} from "./dom.js";
import {releasesSection} from "./releases.js";

const enc = encodeURIComponent;

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

// --- knowledge bases ---------------------------------------------------------------------------------

export async function knowledgePage({query}) {
  setTitle("Knowledge bases");
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const list = await get("/api/v1/knowledge-bases", {limit: PAGE, offset});
  render(h("h1", {}, "Knowledge bases"),
    h("p", {class: "hint"}, "Documents whose chunks tasks train and answer with. Upload documents through the API (see /docs)."),
    table(`Knowledge bases: ${list.total}`, [
      ["Name", (k) => h("a", {href: `#/knowledge/${enc(k.knowledge_base_id)}`}, k.name)],
      ["Status", (k) => statusBadge(k.status)],
      ["Index version", (k) => k.version],
      ["Documents", (k) => k.document_count],
      ["Chunks", (k) => k.chunk_count],
      ["Size", (k) => bytes(k.total_bytes)],
      ["Updated", (k) => when(k.updated_at)],
    ], list.items, {empty: "No knowledge bases yet."}),
    pager("#/knowledge", {}, offset, list.total));
}

/** A form that accepts every stale row's proposed correction, with a reason (one annotation per dataset). */
function acceptProposalsForm(path, proposals) {
  const reason = h("input", {name: "reason", required: true, maxlength: 1000});
  const submit = h("button", {type: "submit"}, `Accept the ${proposals} proposed correction${proposals === 1 ? "" : "s"}`);
  const form = h("form", {class: "card", "aria-label": "Accept the proposed corrections"},
    field("Why (kept with each dataset's new version)", reason),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const done = await post(`${path}/stale-rows/accept-proposals`, {reason: reason.value.trim()});
      flash({notice: `Accepted ${done.accepted.length} proposed corrections in ${done.dataset_versions.length} dataset version(s).`});
      navigate(location.hash);
    } catch (error) {
      showError(error);
      submit.disabled = false;
    }
  });
  return form;
}

export async function knowledgeBasePage({params: [id], me}) {
  const path = `/api/v1/knowledge-bases/${enc(id)}`;
  const kb = await orNotFound(path, "Knowledge base", h("a", {href: "#/knowledge"}, "Back to the knowledge bases"));
  if (!kb) return;
  setTitle(kb.name);
  const documents = (await get(`${path}/documents`)).items;
  const stale = (await get(`${path}/stale-rows`)).items;
  const proposals = stale.filter((r) => r.state === "stale" && r.proposed_answer != null).length;
  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/knowledge"}, "Knowledge bases"), " / ", kb.name),
    h("h1", {}, kb.name),
    facts([
      ["Description", kb.description],
      ["Status", statusBadge(kb.status)],
      ["Error", kb.error],
      ["Index version", kb.version],
      ["Chunks", `${kb.chunk_count} of at most ${kb.chunk_tokens} word pieces, overlapping by ${kb.chunk_overlap_tokens}`],
      ["Embedding model", kb.embedding_model],
      ["Created", when(kb.created_at)],
      ["Updated", when(kb.updated_at)],
    ]),
    h("section", {"aria-labelledby": "docs-heading"}, h("h2", {id: "docs-heading"}, "Documents"),
      table(`Documents: ${documents.length}`, [
        ["File", (d) => d.filename],
        ["Version", (d) => d.version],
        ["Status", (d) => statusBadge(d.status)],
        ["Chunks", (d) => d.chunk_count],
        ["Type", (d) => d.media_type],
        ["Size", (d) => bytes(d.size_bytes)],
        ["Why it failed", (d) => d.error || ""],
        ["Updated", (d) => when(d.updated_at)],
      ], documents, {empty: "No documents yet."})),
    h("section", {"aria-labelledby": "stale-heading"}, h("h2", {id: "stale-heading"}, "Rows the new documents contradict"),
      h("p", {class: "hint"}, "A stale row stays out of training and of the gate's questions until a user confirms or corrects it. ",
        "Accept the proposed corrections here (or with ", h("code", {}, `wlops knowledge stale-rows ${kb.knowledge_base_id} --accept-proposals --reason …`),
        "), or correct a row on its dataset's page."),
      proposals && can(me, "datasets:write") ? acceptProposalsForm(path, proposals) : null,
      table(`Stale rows: ${stale.length}`, [
        ["Question", (r) => r.question],
        ["Changed", (r) => `${r.old_value} → ${r.new_value ?? "removed"}`],
        ["Proposed correction", (r) => r.proposed_answer ?? "none: correct it by hand"],
        ["State", (r) => r.state],
        ["Dataset", (r) => h("a", {href: `#/datasets/${enc(r.dataset_id)}`}, shortId(r.dataset_id))],
        ["Document", (r) => `${r.document_name} v${r.document_version}`],
      ], stale, {empty: "No row contradicted by a document version."})));
}

// --- models ------------------------------------------------------------------------------------------

export async function modelsPage({query}) {
  setTitle("Models");
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const list = await get("/api/v1/models", {limit: PAGE, offset});
  render(h("h1", {}, "Models"),
    h("p", {class: "hint"}, "Every finished task registers its final adapter as the next version of a model; aliases (production…) move through the promotion gate."),
    table(`Registered models: ${list.total}`, [
      ["Name", (m) => h("a", {href: `#/models/${enc(m.name)}`}, m.name)],
      ["Base model", (m) => m.base_model],
      ["Latest version", (m) => m.latest_version ?? "—"],
      ["Aliases", (m) => Object.entries(m.aliases).map(([a, v]) => `${a} → ${v}`).join(", ") || "none"],
      ["Updated", (m) => when(m.updated_at)],
    ], list.items, {empty: "No registered models yet: a task registers one when it completes."}),
    pager("#/models", {}, offset, list.total));
}

export async function modelPage({params: [name], me}) {
  const path = `/api/v1/models/${enc(name)}`;
  const model = await orNotFound(path, "Model", h("a", {href: "#/models"}, "Back to the models"));
  if (!model) return;
  setTitle(model.name);
  const [versions, aliases, gates, releases, members] = await Promise.all([
    get(`${path}/versions`, {limit: 200}), get(`${path}/aliases`), get(`${path}/gates`, {limit: 200}),
    get(`${path}/releases`, {limit: 200}),
    can(me, "members:read") ? get(`/api/v1/orgs/${enc(me.org_id)}/members`) : []]);
  const names = Object.fromEntries(members.map((m) => [m.user_id, m.username]));
  const who = (userId, keyId) => userId ? names[userId] || shortId(userId) : keyId ? ["API key ", shortId(keyId)] : "—";
  const testScore = (v) => score(v.scores?.[v.serving_mode]?.test);
  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/models"}, "Models"), " / ", model.name),
    h("h1", {}, model.name),
    facts([["Base model", model.base_model], ["Description", model.description], ["Created", when(model.created_at)]]),
    h("section", {"aria-labelledby": "versions-heading"}, h("h2", {id: "versions-heading"}, "Versions"),
      table(`Versions: ${versions.total}, newest first`, [
        ["Version", (v) => [String(v.version), v.erased_data_at ? [" ", h("span", {class: "badge status-failed", title: `since ${when(v.erased_data_at)}`}, "trained on erased data")] : null]],
        ["Aliases", (v) => v.aliases.join(", ") || "none"],
        ["Test score", testScore],
        ["Answers", (v) => v.serving_mode === "rag" ? `with ${v.retrieval_top_k ?? ""} passages`.replace("  ", " ") : "closed book"],
        ["Lineage", (v) => [lineage(v), " ", h("a", {href: lineageHref("model_version", `${model.name}@${v.version}`)}, "graph")], {text: true}],
        ["Adapter", (v) => bytes(v.size_bytes)],
        ["Created", (v) => when(v.created_at)],
      ], versions.items)),
    h("section", {"aria-labelledby": "aliases-heading"}, h("h2", {id: "aliases-heading"}, "Aliases and their moves"),
      aliases.length ? aliases.map((a) => table(`${a.alias} → version ${a.version}`, [
        ["When", (m) => when(m.at)],
        ["How", (m) => m.kind],
        ["From", (m) => m.from_version ?? "base model"],
        ["To", (m) => m.to_version],
        ["Why", (m) => m.reason],
        ["Who", (m) => who(m.actor_user_id, m.actor_key_id)],
      ], a.history)) : h("p", {class: "empty"}, "No alias points at a version yet.")),
    h("section", {"aria-labelledby": "gates-heading"}, h("h2", {id: "gates-heading"}, "The promotion gate's decisions"),
      table(`Gates: ${gates.total}, newest first`, [
        ["Requested", (g) => [when(g.created_at), g.finished_at ? h("div", {class: "hint"}, `decided ${when(g.finished_at)}`) : null]],
        ["Asked", (g) => `version ${g.candidate_version} as ${g.alias}, against ${g.current_version ? `version ${g.current_version}` : "the base model"}`],
        ["Decision", (g) => statusBadge(g.status)],
        ["Margin", (g) => g.margin],
        ["Figures", (g) => gateFigures(g), {text: true}],
        ["Reason", (g) => g.forced && !/^forced/i.test(g.reason || "") ? `forced: ${g.reason || ""}` : g.reason || "—", {text: true}],
        ["By", (g) => who(g.requested_by)],
      ], gates.items, {empty: "No promotion has been asked for yet."})),
    releasesSection(model.name, releases));
}

/** Where a version comes from: its task and iteration, its training set, its knowledge base. */
function lineage(v) {
  const link = (kind, id) => h("a", {href: `#/${kind}/${enc(id)}`, "aria-label": `${kind === "tasks" ? "task" : kind === "datasets" ? "dataset" : "knowledge base"} ${id}`}, shortId(id));
  return [h("div", {}, "task ", link("tasks", v.task_id), `, iteration ${v.iteration}`),
          v.dataset_id ? h("div", {}, "trained on ", link("datasets", v.dataset_id)) : null,
          v.knowledge_base_id ? h("div", {}, "knowledge base ", link("knowledge", v.knowledge_base_id), ` version ${v.knowledge_base_version}`) : null];
}

/** The pooled scores side by side (candidate, current, base), and the differences with their 95% intervals. */
function gateFigures(gate) {
  const f = gate.figures;
  if (!f) return "—";
  const scores = f.pooled?.scores || {};
  const line = ["candidate", "current", "base"].filter((m) => m in scores).map((m) => `${m} ${score(scores[m])}`).join(", ");
  const differences = Object.entries(f.differences || {}).map(([which, d]) =>
    `${which}: ${signed(d.mean)} (95% ${(d.interval_95 || []).map((x) => score(x)).join(" to ")})`);
  return [line ? h("div", {}, `${line} on ${f.pooled.questions} questions`) : null, differences.map((d) => h("div", {}, d)),
          h("details", {}, h("summary", {}, "all figures"), h("pre", {}, JSON.stringify(f, null, 2)))];
}

// --- QA history --------------------------------------------------------------------------------------

export async function qaPage({query, me}) {
  setTitle("QA history");
  const rating = ["up", "down", "none"].includes(query.get("rating")) ? query.get("rating") : "";
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const list = await get("/api/v1/qa/history", {rating, limit: PAGE, offset});
  const select = h("select", {id: "qa-rating"}, [["", "Any"], ["none", "Not rated yet"], ["up", "Rated up"], ["down", "Rated down"]]
    .map(([value, label]) => h("option", {value, selected: value === rating}, label)));
  const filter = h("form", {class: "toolbar", role: "search", "aria-label": "Filter the history"},
    h("div", {class: "field"}, h("label", {for: "qa-rating"}, "Rating"), select), h("button", {type: "submit"}, "Show"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(select.value ? `#/qa?rating=${select.value}` : "#/qa");
  });
  select.addEventListener("change", () => filter.requestSubmit());
  const mayRate = can(me, "inference");

  function ratingCell(entry) {
    const state = h("span", {class: "rating"}, entry.rating ? `rated ${entry.rating}` : "not rated");
    if (!mayRate) return state;
    const rate = (value) => async () => {
      try {
        const updated = await post(`/api/v1/qa/history/${enc(entry.entry_id)}/feedback`, {rating: value});
        state.textContent = `rated ${updated.rating}`;
        showNotice(`Thanks: the answer is rated ${updated.rating}.`);
      } catch (error) {
        showError(error);
      }
    };
    return [state, h("span", {class: "buttons"},
      h("button", {type: "button", onclick: rate("up"), "aria-label": `Rate the answer to “${question(entry)}” up`}, "Good"),
      h("button", {type: "button", onclick: rate("down"), "aria-label": `Rate the answer to “${question(entry)}” down`}, "Bad"))];
  }

  render(h("h1", {}, "QA history"),
    h("p", {class: "hint"}, "What the serving process answered, newest first. Answers rated up, and corrections, become training data."),
    filter,
    table(`Answers: ${list.total}`, [
      ["Question", (e) => question(e), {text: true}],
      ["Answer", (e) => answer(e.answer), {text: true}],
      ["Model", (e) => e.model.includes("@") ? h("a", {href: `#/models/${enc(e.model.split("@")[0])}`}, e.model) : e.model],
      ["Sources", (e) => e.sources.length],
      ["Latency", (e) => `${e.latency_ms} ms`],
      ["Asked", (e) => when(e.created_at)],
      ["Feedback", ratingCell],
    ], list.items, {empty: "No answers yet: ask a model through the serving process."}),
    pager("#/qa", {rating}, offset, list.total));
}

function question(entry) {
  const user = [...entry.messages].reverse().find((m) => m.role === "user");
  return user ? String(user.content) : "(no question)";
}
