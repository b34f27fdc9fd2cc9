// A dataset's versions: the list (who, when, why, what changed), the diff between two versions, the head's rows for
// review with their fact checks (derived ones marked), an edit form that saves a row's correction as a new version, and
// downloads in three formats.

import {download, get, post} from "./api.js";
import {PAGE, facts, field, flash, h, navigate, pager, shortId, showError, table, when} from "./dom.js";
import {lineageHref} from "./lineage.js";

const base = (id) => `/api/v1/datasets/${encodeURIComponent(id)}`;

/** The sections of a dataset's page about its versions (`query` holds the rows' offset and filter). */
export async function versionSections(dataset, query, me) {
  const id = dataset.dataset_id;
  const listing = await get(`${base(id)}/versions`);
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const tag = query.get("tag") || undefined;
  const rows = await get(`${base(id)}/versions/${listing.head}/rows`, {limit: PAGE, offset, tag});
  const editable = Boolean(me && me.scopes.includes("datasets:write")) && !dataset.is_optimized;
  return [
    h("section", {"aria-labelledby": "versions-heading"}, h("h2", {id: "versions-heading"}, "Versions"),
      table(`Versions: ${listing.items.length} (newest ${listing.head})`, [
        ["Version", (v) => String(v.version)],
        ["Kind", (v) => v.kind],
        ["Rows", (v) => v.row_count],
        ["Changes", (v) => (v.changes ? Object.entries(v.changes).filter(([k]) => k !== "unchanged").map(([k, n]) => `${n} ${k}`).join(", ") : "—")],
        ["Why", (v) => v.reason || "—", {text: true}],
        ["Content hash", (v) => shortId(v.content_hash)],
        ["When", (v) => when(v.created_at)],
        ["Lineage", (v) => h("a", {href: lineageHref("dataset_version", `${id}@${v.version}`)}, `lineage of v${v.version}`)],
      ], listing.items),
      downloads(id, listing.head)),
    diffSection(id, listing),
    h("section", {"aria-labelledby": "rows-heading"}, h("h2", {id: "rows-heading"}, `Rows of version ${listing.head}`),
      h("p", {class: "hint"}, "An answer is right when all its row's checks pass. Checks marked derived were made from the answer by a rule: review them."),
      tag ? h("p", {}, `Only rows tagged “${tag}”. `, h("a", {href: `#/datasets/${encodeURIComponent(id)}`}, "Show every row")) : null,
      table(`Rows: ${rows.total}`, [
        ["Row", (r) => h("code", {}, r.row_id)],
        ["Question", (r) => r.question, {text: true}],
        ["Answer", (r) => r.answer, {text: true}],
        ["Checks", (r) => r.checks.map((c) => h("div", {class: "check"}, c.derived ? h("span", {class: "badge"}, "derived") : null, " ", checkText(c))), {text: true}],
        ["Tags", (r) => r.tags.map((t) => h("a", {href: `#/datasets/${encodeURIComponent(id)}?tag=${encodeURIComponent(t)}`, class: "badge"}, t))],
        ["Excluded", (r) => (r.excluded ? "excluded" : "")],
        ...(editable ? [["Edit", (r) => h("button", {type: "button", "aria-label": `Edit row ${r.row_id}`, onclick: (e) => openEditor(e.target, id, listing.head, r)}, "Edit")]] : []),
      ], rows.items, {empty: "No rows."}),
      pager(`#/datasets/${encodeURIComponent(id)}`, tag ? {tag} : {}, offset, rows.total)),
  ];
}

function checkText(check) {
  const {type, derived, ...rest} = check;
  const parts = Object.entries(rest).filter(([, v]) => v !== null && v !== undefined && v !== 0)
    .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : String(v)}`);
  return `${type}: ${parts.join(", ")}`;
}

function downloads(id, head) {
  return h("p", {class: "actions"}, `Download version ${head}: `,
    ["jsonl", "alpaca", "chat"].map((format) => h("button", {type: "button", onclick: async () => {
      try {
        await download(`${base(id)}/versions/${head}/download`, {format}, `${id}-v${head}-${format}.jsonl`);
      } catch (error) {
        showError(error);
      }
    }}, format)));
}

function diffSection(id, listing) {
  const choices = (selected) => [h("option", {value: "0"}, "0 (no rows)"),
    ...listing.items.map((v) => h("option", {value: String(v.version), selected: v.version === selected}, String(v.version)))];
  const head = listing.items[listing.items.length - 1];
  const from = h("select", {name: "from"}, choices(head.parent_version ?? 0));
  const to = h("select", {name: "to"}, choices(head.version));
  const out = h("div", {id: "diff-result", "aria-live": "polite"});
  const form = h("form", {class: "inline"}, field("From version", from), field("To version", to), h("button", {type: "submit"}, "Show changes"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      out.replaceChildren(...renderDiff(await get(`${base(id)}/diff`, {from_version: from.value, to_version: to.value})));
    } catch (error) {
      showError(error);
    }
  });
  return h("section", {"aria-labelledby": "diff-heading"}, h("h2", {id: "diff-heading"}, "Changes between versions"), form, out);
}

function renderDiff(diff) {
  const json = (v) => (v === undefined ? "—" : h("code", {class: "json"}, JSON.stringify(v)));
  const rows = [
    ...diff.added.map((r) => ({row_id: r.row_id, what: "added", field: "", before: undefined, after: r.record})),
    ...diff.removed.map((r) => ({row_id: r.row_id, what: "removed", field: "", before: r.record, after: undefined})),
    ...diff.changed.flatMap((r) => r.fields.map((f) => ({row_id: r.row_id, what: "changed", field: f, before: r.before[f], after: r.after[f]}))),
  ];
  return [
    facts(Object.entries(diff.counts).map(([k, n]) => [k, String(n)])),
    table(`Version ${diff.from_version} → ${diff.to_version}`, [
      ["Row", (r) => h("code", {}, r.row_id)],
      ["Change", (r) => r.what],
      ["Field", (r) => r.field],
      ["Before", (r) => json(r.before), {text: true}],
      ["After", (r) => json(r.after), {text: true}],
    ], rows, {empty: "The two versions hold the same rows."}),
  ];
}

function openEditor(button, id, head, row) {
  const cell = button.closest("tr");
  const existing = cell.nextElementSibling?.classList.contains("editor") ? cell.nextElementSibling : null;
  if (existing) { existing.remove(); return; }
  const answer = h("textarea", {name: "answer", rows: 3}, row.answer);
  const checks = h("textarea", {name: "checks", rows: 4, class: "json"}, JSON.stringify(row.checks.map(({derived, ...c}) => c), null, 1));
  const tags = h("input", {name: "tags", value: row.tags.join(", ")});
  const excluded = h("input", {type: "checkbox", name: "excluded", checked: row.excluded});
  const reason = h("input", {name: "reason", required: true, maxlength: 1000});
  const form = h("form", {class: "card", "aria-label": `Edit row ${row.row_id}`},
    field("Answer", answer), field("Checks (JSON)", checks, "Saved as reviewed checks. [] removes them: derived ones are made again."),
    field("Tags (comma separated)", tags), field("Excluded from training", excluded), field("Why", reason, "Kept with the new version."),
    h("button", {type: "submit"}, "Save as a new version"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(checks.value || "[]");
    } catch {
      showError({name: "ApiError", message: "Checks: not valid JSON."});
      return;
    }
    const newTags = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    const edit = {row_id: row.row_id};
    if (answer.value.trim() !== row.answer) edit.answer = answer.value.trim();
    if (JSON.stringify(parsed) !== JSON.stringify(row.checks.map(({derived, ...c}) => c)) || row.checks.some((c) => c.derived)) edit.checks = parsed;
    edit.add_tags = newTags.filter((t) => !row.tags.includes(t));
    edit.remove_tags = row.tags.filter((t) => !newTags.includes(t));
    if (excluded.checked !== row.excluded) edit.excluded = excluded.checked;
    try {
      const version = await post(`${base(id)}/annotations`, {reason: reason.value.trim(), base_version: head, edits: [edit]});
      flash({notice: `Saved row ${row.row_id} as version ${version.version}.`});
      navigate(`#/datasets/${encodeURIComponent(id)}`);
    } catch (error) {
      showError(error);
    }
  });
  const columns = cell.children.length;
  cell.after(h("tr", {class: "editor"}, h("td", {colspan: columns}, form)));
}
