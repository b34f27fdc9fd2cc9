// A line plot as inline SVG: axes with a few round ticks, one polyline (and dots) per series, a legend. The numbers
// behind it are in the tables next to each plot; the SVG carries a title and a description for screen readers.

const SVG = "http://www.w3.org/2000/svg";
const W = 520, H = 280, M = {top: 16, right: 16, bottom: 46, left: 62};

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** About `count` round tick values covering [lo, hi], and the decimals their labels need. */
function ticks(lo, hi, count = 5) {
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((st) => st >= raw * (1 - 1e-9));
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (String(step / magnitude).includes(".") ? 1 : 0));
  const values = [];
  for (let i = Math.floor(lo / step + 1e-9); ; i += 1) {
    const v = Number((i * step).toFixed(decimals + 2));
    values.push(v);
    if (v >= hi - step * 1e-9) break;
  }
  return {values, decimals};
}

/** The range to show: [lo, hi] widened when every value is the same (a flat line still needs an axis). */
function range(lo, hi, fixedLo) {
  if (hi > lo) return [lo, hi];
  if (fixedLo !== undefined) return [fixedLo, Math.max(fixedLo + 1, hi)];
  const pad = Math.abs(lo) / 10 || 0.5;
  return [lo - pad, hi + pad];
}

/**
 * series: [{name, points: [[x, y], ...]}]; options: title, description, xLabel, yLabel, integerX (ticks on whole numbers),
 * yMin / yMax (fixed range, e.g. scores in [0, 1]).
 */
export function linePlot({title, description, xLabel, yLabel, series, integerX = false, yMin, yMax}) {
  const points = series.flatMap((one) => one.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const figure = document.createElement("figure");
  figure.className = "plot";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  if (!points.length) {
    const none = document.createElement("p");
    none.className = "empty";
    none.textContent = "No data to plot yet.";
    figure.append(caption, none);
    return figure;
  }
  const xs = points.map(([x]) => x), ys = points.map(([, y]) => y);
  const xScale = ticks(...range(Math.min(...xs), Math.max(...xs), integerX ? Math.min(...xs) : undefined));
  const xTicks = integerX ? [...new Set(xScale.values.map(Math.round))] : xScale.values;
  const xDecimals = integerX ? 0 : xScale.decimals;
  const yScale = ticks(...range(yMin ?? Math.min(...ys), yMax ?? Math.max(...ys), yMin));
  const yTicks = yScale.values;
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const px = (x) => M.left + ((x - x0) / (x1 - x0 || 1)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - M.top - M.bottom);

  const titleId = `plot-${Math.random().toString(36).slice(2)}`;
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${titleId}-t ${titleId}-d`, class: "plot-svg"});
  svg.append(s("title", {id: `${titleId}-t`}, title), s("desc", {id: `${titleId}-d`}, description || title));
  const axes = s("g", {class: "axes"});
  for (const t of yTicks) {
    axes.append(s("line", {x1: M.left, x2: W - M.right, y1: py(t), y2: py(t), class: "grid"}));
    axes.append(s("text", {x: M.left - 6, y: py(t) + 4, "text-anchor": "end"}, t.toFixed(yScale.decimals)));
  }
  for (const t of xTicks) axes.append(s("text", {x: px(t), y: H - M.bottom + 18, "text-anchor": "middle"}, t.toFixed(xDecimals)));
  axes.append(s("line", {x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis"}));
  axes.append(s("line", {x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis"}));
  axes.append(s("text", {x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label"}, xLabel));
  axes.append(s("text", {x: 15, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", class: "axis-label",
                         transform: `rotate(-90 15 ${(M.top + H - M.bottom) / 2})`}, yLabel));
  svg.append(axes);
  series.forEach((one, i) => {
    const good = one.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const g = s("g", {class: `series series-${i % 6}${one.dashed ? " dashed" : ""}`});
    if (good.length > 1) g.append(s("polyline", {points: good.map(([x, y]) => `${px(x)},${py(y)}`).join(" ")}));
    if (good.length <= 30) for (const [x, y] of good) g.append(s("circle", {cx: px(x), cy: py(y), r: 3}));
    svg.append(g);
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((one, i) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch series-${i % 6}${one.dashed ? " dashed" : ""}`;
    swatch.setAttribute("aria-hidden", "true");
    item.append(swatch, one.name);
    legend.append(item);
  });
  figure.append(caption, svg, legend);
  return figure;
}
