// The lineage graph of any node: what it came from (columns to its left) and what came of it (columns to its right),
// each node a link to its own graph (and to its page where it has one), the arrows drawn over the columns, and the same
// edges as a table for readers who do not see the drawing.

import {get} from "./api.js";
import {h, render, setTitle, table} from "./dom.js";

const KIND_NAMES = {
  document_version: "document version", document: "document", knowledge_base: "knowledge base", dataset_version: "dataset version", task: "task",
  iteration: "iteration", model_version: "model version", alias: "alias", qa_answer: "QA answer",
};

export const lineageHref = (kind, id) => `#/lineage/${kind}/${encodeURIComponent(id)}`;

export async function lineagePage({params: [kind, id]}) {
  const graph = await get(`/api/v1/lineage/${encodeURIComponent(kind)}/${encodeURIComponent(id)}`);
  setTitle(`Lineage of ${graph.root.label}`);
  const key = (kind, id) => `${kind}:${id}`;
  const nodes = new Map(graph.nodes.map((n) => [key(n.kind, n.id), n]));
  const depth = layers(graph, key(graph.root.kind, graph.root.id), key);
  const columns = [...new Set(depth.values())].sort((a, b) => a - b);
  const boxes = new Map();
  const drawing = h("div", {class: "lineage", role: "img", "aria-label": `Lineage graph of ${graph.root.label}: ${graph.nodes.length} nodes`},
    columns.map((column) => h("div", {class: "lineage-column"},
      [...depth].filter(([, d]) => d === column).map(([k]) => {
        const node = nodes.get(k);
        const box = h("div", {class: `lineage-node${column === 0 ? " root" : ""}`},
          h("span", {class: "hint"}, KIND_NAMES[node.kind] || node.kind),
          h("a", {href: lineageHref(node.kind, node.id)}, node.label),
          page(node) ? [" ", h("a", {href: page(node), class: "hint"}, "open")] : null);
        boxes.set(k, box);
        return box;
      }))));
  render(
    h("h1", {}, `Lineage of ${graph.root.label}`),
    h("p", {class: "hint"}, "Upstream to the left (what it came from), downstream to the right (what came of it). Each node opens its own lineage."),
    graph.truncated ? h("p", {class: "empty"}, "The graph is larger than shown: it stops at 200 nodes in each direction.") : null,
    h("div", {class: "lineage-wrap"}, drawing),
    h("section", {"aria-labelledby": "edges-heading"}, h("h2", {id: "edges-heading"}, "Edges"),
      table(`Edges: ${graph.edges.length}`, [
        ["From", (e) => label(nodes, key(e.from_kind, e.from_id))],
        ["To", (e) => label(nodes, key(e.to_kind, e.to_id))],
      ], graph.edges, {empty: "Nothing is upstream or downstream of it yet."})));
  drawArrows(drawing, graph.edges.map((e) => [boxes.get(key(e.from_kind, e.from_id)), boxes.get(key(e.to_kind, e.to_id))]));
}

function label(nodes, k) {
  const node = nodes.get(k);
  return node ? `${node.label} (${KIND_NAMES[node.kind] || node.kind})` : k;
}

/** Each node's column: 0 for the root, -n n steps upstream, +n n steps downstream. */
function layers(graph, root, key) {
  const depth = new Map([[root, 0]]);
  for (const [sign, next] of [[1, (e) => [key(e.from_kind, e.from_id), key(e.to_kind, e.to_id)]],
                              [-1, (e) => [key(e.to_kind, e.to_id), key(e.from_kind, e.from_id)]]]) {
    let frontier = [root];
    while (frontier.length) {
      const following = [];
      for (const at of frontier) {
        for (const edge of graph.edges) {
          const [a, b] = next(edge);
          if (a === at && !depth.has(b)) {
            depth.set(b, depth.get(at) + sign);
            following.push(b);
          }
        }
      }
      frontier = following;
    }
  }
  return depth;
}

function page(node) {
  const id = encodeURIComponent(node.id);
  if (node.kind === "task") return `#/tasks/${id}`;
  if (node.kind === "knowledge_base") return `#/knowledge/${id}`;
  if (node.kind === "dataset_version") return `#/datasets/${encodeURIComponent(node.id.split("@")[0])}`;
  return null;
}

/** Arrows from each edge's upstream box to its downstream box, in an SVG laid over the columns. */
function drawArrows(drawing, pairs) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "lineage-arrows");
  svg.setAttribute("aria-hidden", "true");
  const origin = drawing.getBoundingClientRect();
  svg.setAttribute("width", String(drawing.scrollWidth));
  svg.setAttribute("height", String(drawing.scrollHeight));
  for (const [from, to] of pairs) {
    if (!from || !to) continue;
    const a = from.getBoundingClientRect();
    const b = to.getBoundingClientRect();
    const line = document.createElementNS(ns, "path");
    const x1 = a.right - origin.left, y1 = a.top + a.height / 2 - origin.top;
    const x2 = b.left - origin.left, y2 = b.top + b.height / 2 - origin.top;
    const bend = Math.max(20, (x2 - x1) / 2);
    line.setAttribute("d", `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`);
    svg.append(line);
  }
  drawing.prepend(svg);
}
