// Datasets: the list with an upload form (progress from the upload's own events), and a dataset with its lineage and
// a preview of its rows.

import {ApiError, get, upload} from "./api.js";
import {versionSections} from "./dataset_versions.js";
import {PAGE, bytes, can, facts, field, flash, h, navigate, pager, render, setTitle, showError, statusBadge, table, when} from "./dom.js";

const datasetPath = (id) => `/api/v1/datasets/${encodeURIComponent(id)}`;

export async function datasetsPage({query, me}) {
  setTitle("Datasets");
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const list = await get("/api/v1/datasets", {limit: PAGE, offset});
  render(
    h("h1", {}, "Datasets"),
    can(me, "datasets:write") ? uploadForm() : null,
    h("section", {"aria-labelledby": "list-heading"}, h("h2", {id: "list-heading"}, "All datasets"),
      table(`Datasets: ${list.total}`, [
        ["Name", (d) => h("a", {href: `#/datasets/${encodeURIComponent(d.dataset_id)}`}, d.name)],
        ["Examples", (d) => d.sample_count],
        ["Format", (d) => d.file_format],
        ["Size", (d) => bytes(d.size_bytes)],
        ["Made by", (d) => origin(d)],
        ["Status", (d) => statusBadge(d.status)],
        ["Created", (d) => when(d.created_at)],
      ], list.items, {empty: "No datasets yet: upload one above."}),
      pager("#/datasets", {}, offset, list.total)));
}

function origin(d) {
  if (d.is_optimized) return d.task_id ? ["task ", h("a", {href: `#/tasks/${encodeURIComponent(d.task_id)}`}, "optimization")] : "optimization";
  if (d.source_knowledge_base_id) return "generation from a knowledge base";
  if (d.generation_log && d.generation_log.source === "qa_history") return "QA history feedback";
  return "upload";
}

function uploadForm() {
  const file = h("input", {type: "file", name: "file", required: true, accept: ".jsonl,.json,.csv,application/json,text/csv"});
  const name = h("input", {name: "name", required: true, maxlength: 200});
  const domain = h("input", {name: "domain", maxlength: 200});
  const bar = h("progress", {id: "upload-progress", max: "100", value: "0"});
  const percent = h("span", {id: "upload-percent", "aria-live": "polite"}, "");
  const submit = h("button", {type: "submit"}, "Upload");
  file.addEventListener("change", () => {
    if (!name.value && file.files[0]) name.value = file.files[0].name.replace(/\.(jsonl|json|csv)$/i, "");
  });
  const form = h("form", {class: "card", "aria-labelledby": "upload-heading"},
    h("h2", {id: "upload-heading"}, "Upload a dataset"),
    field("File", file, "JSONL, JSON or CSV: question/answer, instruction/input/output, prompt/response or chat messages."),
    field("Name", name),
    field("Domain (optional)", domain),
    h("div", {class: "progress"}, h("label", {for: "upload-progress"}, "Upload progress"), bar, percent),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    const body = new FormData();
    body.append("file", file.files[0]);
    body.append("name", name.value.trim());
    if (domain.value.trim()) body.append("domain", domain.value.trim());
    submit.disabled = true;
    bar.value = 0;
    percent.textContent = "0%";
    try {
      const dataset = await upload("/api/v1/datasets", body, (sent, total) => {
        bar.value = Math.round((100 * sent) / total);
        percent.textContent = `${bar.value}%`;
      });
      bar.value = 100;
      percent.textContent = "100%: checked and stored";
      flash({notice: `Uploaded ${dataset.name}: ${dataset.sample_count} examples.`});
      navigate(`#/datasets/${encodeURIComponent(dataset.dataset_id)}`);
    } catch (error) {
      percent.textContent = "upload refused";
      showError(error);
      submit.disabled = false;
    }
  });
  return form;
}

export async function datasetPage({params: [id], query, me}) {
  let dataset;
  try {
    dataset = await get(datasetPath(id));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    setTitle("Dataset not found");
    render(h("h1", {}, "Dataset not found"), h("p", {}, `${error.message}.`), h("p", {}, h("a", {href: "#/datasets"}, "Back to the datasets")));
    showError(error);
    return;
  }
  setTitle(dataset.name);
  const preview = h("div", {}, h("p", {}, "Loading the preview…"));
  const versions = h("div", {}, dataset.status === "READY" ? h("p", {}, "Loading the versions…") : null);
  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/datasets"}, "Datasets"), " / ", dataset.name),
    h("h1", {}, dataset.name),
    h("section", {"aria-labelledby": "about-heading"}, h("h2", {id: "about-heading"}, "About"),
      facts([
        ["Id", h("code", {}, dataset.dataset_id)],
        ["Status", statusBadge(dataset.status)],
        ["Error", dataset.error],
        ["Examples", dataset.sample_count],
        ["Version", String(dataset.version)],
        ["Format", dataset.file_format],
        ["Size", bytes(dataset.size_bytes)],
        ["Domain", dataset.domain],
        ["Type", dataset.dataset_type],
        ["Created", when(dataset.created_at)],
      ])),
    h("section", {"aria-labelledby": "lineage-heading"}, h("h2", {id: "lineage-heading"}, "Lineage"), lineage(dataset)),
    h("section", {"aria-labelledby": "preview-heading"}, h("h2", {id: "preview-heading"}, "Preview"), preview),
    versions);
  if (dataset.status !== "READY") {
    preview.replaceChildren(h("p", {class: "empty"}, `No preview while the dataset is ${dataset.status}.`));
    return;
  }
  try {
    const rows = (await get(`${datasetPath(id)}/preview`, {limit: 20})).rows;
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    preview.replaceChildren(table(`The first ${rows.length} rows`, columns.map((c) => [c, (r) => cell(r[c]), {text: true}]), rows,
                                  {empty: "The dataset has no rows."}));
  } catch (error) {
    preview.replaceChildren(h("p", {class: "empty"}, "The preview could not be loaded."));
    showError(error);
  }
  try {
    versions.replaceChildren(...await versionSections(dataset, query, me));
  } catch (error) {
    versions.replaceChildren(h("p", {class: "empty"}, "The versions could not be loaded."));
    showError(error);
  }
}

function cell(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return h("code", {class: "json"}, JSON.stringify(value));
  return String(value);
}

function lineage(d) {
  const link = (kind, id) => h("a", {href: `#/${kind}/${encodeURIComponent(id)}`}, id);
  const parts = [facts([
    ["Made by", origin(d)],
    ["From dataset", d.source_dataset_id ? link("datasets", d.source_dataset_id) : null],
    ["For task", d.task_id ? link("tasks", d.task_id) : null],
    ["From knowledge base", d.source_knowledge_base_id
      ? [link("knowledge", d.source_knowledge_base_id), d.source_knowledge_base_version != null ? ` (version ${d.source_knowledge_base_version})` : ""] : null],
  ])];
  if (d.optimization_log) parts.push(logTable("What the optimizer did", d.optimization_log));
  if (d.generation_log) parts.push(logTable("How it was generated", d.generation_log));
  if (!d.source_dataset_id && !d.task_id && !d.source_knowledge_base_id && !d.optimization_log && !d.generation_log) {
    parts.push(h("p", {class: "hint"}, "Uploaded as it is: it has no parent. Tasks that train on it make optimized copies, which name it here."));
  }
  return parts;
}

/** A log object as a two-column table: numbers and words as they are, counts by reason summed up, the rest as JSON. */
function logTable(caption, log) {
  const rows = Object.entries(log).filter(([, v]) => v !== null && v !== undefined);
  return table(caption, [
    ["Entry", ([k]) => k.replaceAll("_", " ")],
    ["Value", ([, v]) => {
      if (typeof v !== "object") return String(v);
      const values = Object.values(v);
      if (!Array.isArray(v) && values.length && values.every((x) => typeof x === "number")) {
        return Object.entries(v).map(([k, n]) => `${k}: ${n}`).join(", ");
      }
      return h("details", {}, h("summary", {}, Array.isArray(v) ? `${v.length} item(s)` : `${Object.keys(v).length} entr${Object.keys(v).length === 1 ? "y" : "ies"}`),
               h("pre", {}, JSON.stringify(v, null, 2)));
    }],
  ], rows);
}
