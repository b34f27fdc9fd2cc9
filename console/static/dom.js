// Building the page: elements from data (text only, never HTML strings), tables, numbers and dates, messages.

let uid = 0;
export const PAGE = 50;  // rows per page of a listing

/** An element: h("a", {href: "#/x", class: "c", onclick: f}, "text", child, ...). Text children are text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A fresh id for pairing a label with its input. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: the label, the control, and an optional hint tied to it with aria-describedby. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = newId();
  const parts = [h("label", {for: control.id}, labelText), control];
  if (hint) {
    const hintId = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", {class: "hint", id: hintId}, hint));
  }
  return h("div", {class: "field"}, parts);
}

/** A table with a caption: columns are [header, row => cell content, {text: true} for columns of running text]. */
export function table(caption, columns, rows, {empty = "Nothing yet."} = {}) {
  if (!rows.length) return h("p", {class: "empty"}, empty);
  return h("div", {class: "table-wrap"},
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map(([title, , options = {}]) => h("th", {scope: "col", class: options.text ? "text" : null}, title)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell, options = {}], i) => {
        const attrs = {class: options.text ? "text" : null};
        return i === 0 ? h("th", {scope: "row", ...attrs}, cell(row)) : h("td", attrs, cell(row));
      }))))));
}

/** A long id, shortened for reading; the whole id is in the title (and in the link it names). */
export function shortId(id) {
  return h("code", {title: id}, id.length > 12 ? `${id.slice(0, 8)}…` : id);
}

/** An answer as it was, saying so when it was empty. */
export function answer(text) {
  return text === null || text === undefined ? "—" : text.trim() ? text : h("em", {class: "empty"}, "(empty answer)");
}

/** A definition list of [term, value] pairs, leaving out empty values. */
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

export function score(value, digits = 4) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

export function signed(value, digits = 4) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(digits);
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function bytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function statusBadge(status) {
  return h("span", {class: `badge status-${String(status).toLowerCase()}`}, status);
}

/** Show an error in the page's alert region (role="alert", so screen readers announce it): words, never a trace. */
export function showError(error) {
  const region = document.getElementById("alert");
  region.replaceChildren(h("p", {}, messageOf(error)));
  region.hidden = false;
}

let flashed = null;  // a message for the next page, shown once it has rendered its first content

/** Keep a message for the page the console is about to open: {error} or {notice}. */
export function flash(message) {
  flashed = message;
}

/** Clear the message regions when a page opens, then show what the previous page left for it. */
export function clearMessages() {
  for (const id of ["alert", "notice"]) {
    const region = document.getElementById(id);
    region.replaceChildren();
    region.hidden = true;
  }
  if (flashed?.error) showError({name: "ApiError", message: flashed.error});
  if (flashed?.notice) showNotice(flashed.notice);
  flashed = null;
}

export function setTitle(text) {
  document.title = `${text} · WLOps console`;
}

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

/** Whether the signed-in caller holds a scope (to offer an action; the API decides). */
export function can(me, scope) {
  return Boolean(me && me.scopes.includes(scope));
}

/** Say that something worked (role="status": announced politely). */
export function showNotice(text) {
  const region = document.getElementById("notice");
  region.replaceChildren(h("p", {}, text));
  region.hidden = false;
}

export function messageOf(error) {
  if (error && typeof error.message === "string" && error.name === "ApiError") return error.message;
  if (error && error.name === "TypeError") return "The API could not be reached. Check that it is running, then try again.";
  return "Something went wrong in the console. Reload the page and try again.";
}

let rendered = false;

/** Replace the main region's content; when the console moved to another page, move focus to its heading, so keyboard and
 * screen reader users start there (on the first page the browser's own order applies: the skip link comes first). */
export function render(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  const heading = main.querySelector("h1");
  const first = !rendered;
  rendered = true;
  if (heading && !first) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({preventScroll: true});
  }
}

/** Previous / next links for a listing of `total` rows shown PAGE at a time from `offset`. */
export function pager(base, params, offset, total) {
  const link = (to, text) => {
    const query = new URLSearchParams(Object.entries({...params, offset: to || ""}).filter(([, v]) => v !== ""));
    return h("a", {href: `${base}${query.size ? `?${query}` : ""}`}, text);
  };
  if (total <= PAGE) return null;
  return h("nav", {class: "pager", "aria-label": "Pages"},
    offset > 0 ? link(Math.max(0, offset - PAGE), "Previous") : null,
    h("span", {}, `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}`),
    offset + PAGE < total ? link(offset + PAGE, "Next") : null);
}
