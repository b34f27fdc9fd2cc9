// Tasks: the list filtered by status, the create form, a task with its live progress from the event stream and its
// controls, and its report (iterations against the base model, plots, bad case follow-ups, examples side by side).

import {lineageHref} from "./lineage.js";
import {ApiError, get, post, streamEvents} from "./api.js";
import {PAGE, answer, can, facts, field, flash, h, navigate, pager, render, score, setTitle, showError, showNotice, signed, statusBadge, table, when} from "./dom.js";
import {linePlot} from "./plot.js";

const STATUSES = ["PENDING", "OPTIMIZING", "TRAINING", "EVALUATING", "LOOPING", "SUSPENDED", "COMPLETED", "FAILED", "CANCELLED"];
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const PHASES = new Set(["OPTIMIZING", "TRAINING", "EVALUATING"]);

const taskPath = (id) => `/api/v1/tasks/${encodeURIComponent(id)}`;

// --- the list ----------------------------------------------------------------------------------------

export async function tasksPage({query, me}) {
  setTitle("Tasks");
  const status = STATUSES.includes(query.get("status")) ? query.get("status") : "";
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const list = await get("/api/v1/tasks", {status, limit: PAGE, offset});

  const select = h("select", {name: "status"}, h("option", {value: ""}, "Any status"),
    STATUSES.map((s) => h("option", {value: s, selected: s === status}, s)));
  const filter = h("form", {class: "toolbar", role: "search", "aria-label": "Filter tasks"},
    field("Status", select), h("button", {type: "submit"}, "Show"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(select.value ? `#/tasks?status=${select.value}` : "#/tasks");
  });
  select.addEventListener("change", () => filter.requestSubmit());

  const rows = table(`Tasks${status ? ` with status ${status}` : ""}: ${list.total}`, [
    ["Name", (t) => h("a", {href: `#/tasks/${encodeURIComponent(t.task_id)}`}, t.task_name)],
    ["Mode", (t) => t.mode.toLowerCase()],
    ["Status", (t) => statusBadge(t.status)],
    ["Iteration", (t) => `${t.current_iteration} of ${t.max_iterations}`],
    ["Test score", (t) => score(t.latest_score)],
    ["Base model", (t) => score(t.baseline_score)],
    ["Updated", (t) => when(t.updated_at)],
  ], list.items, {empty: status ? `No task is ${status}.` : `No tasks yet${can(me, "tasks:write") ? ": create one" : ""}.`});

  render(
    h("div", {class: "page-head"}, h("h1", {}, "Tasks"),
      can(me, "tasks:write") ? h("a", {class: "button", href: "#/tasks/new"}, "New task") : null),
    filter, rows, pager("#/tasks", {status}, offset, list.total));
}

// --- the create form ---------------------------------------------------------------------------------

const HYPERPARAMETERS = [
  ["learning_rate", "Learning rate", {min: "0", max: "1", step: "any"}, "Greater than 0."],
  ["epochs", "Epochs", {min: "1", max: "100", step: "1"}],
  ["batch_size", "Batch size", {min: "1", max: "512", step: "1"}],
  ["max_steps", "Maximum training steps", {min: "1", step: "1"}, "Caps each iteration."],
  ["lora_r", "LoRA rank", {min: "1", max: "256", step: "1"}],
  ["lora_alpha", "LoRA alpha", {min: "0", max: "1024", step: "any"}],
  ["lora_dropout", "LoRA dropout", {min: "0", max: "0.99", step: "any"}],
  ["max_seq_length", "Maximum sequence length", {min: "16", max: "8192", step: "1"}],
  ["seed", "Seed", {min: "0", step: "1"}],
];

export async function newTaskPage({me}) {
  setTitle("New task");
  const [datasets, kbs] = await Promise.all([
    get("/api/v1/datasets", {limit: 200}),
    can(me, "knowledge:read") ? get("/api/v1/knowledge-bases", {limit: 200}) : {items: []},
  ]);
  // a task's own training sets are its artifacts (held-out rows already taken out): offer the datasets people made
  const ready = datasets.items.filter((d) => d.status === "READY" && !d.is_optimized);
  const heading = h("h1", {}, "New task");
  if (!ready.length) {
    render(heading, h("p", {}, "A task trains on a dataset, and this organization has none ready yet. ",
                       h("a", {href: "#/datasets"}, "Upload a dataset first.")));
    return;
  }

  const name = h("input", {name: "task_name", required: true, maxlength: 200});
  const standard = h("input", {type: "radio", name: "mode", value: "standard", id: "mode-standard", checked: true});
  const continuous = h("input", {type: "radio", name: "mode", value: "continuous", id: "mode-continuous"});
  const dataset = h("select", {name: "dataset_id", required: true},
    ready.map((d) => h("option", {value: d.dataset_id}, `${d.name} (${d.sample_count} examples)`)));
  const model = h("input", {name: "model_name", required: true, maxlength: 500, value: "smollm2-135m-instruct"});
  const kb = h("select", {name: "knowledge_base_id"}, h("option", {value: ""}, "None (closed book)"),
    kbs.items.filter((k) => k.version > 0).map((k) => h("option", {value: k.knowledge_base_id}, `${k.name} (version ${k.version})`)));
  const topK = h("input", {name: "retrieval_top_k", type: "number", min: "1", max: "10", step: "1", value: "3"});
  const statements = h("input", {name: "context_statements", type: "number", min: "1", max: "20", step: "1"});
  const iterations = h("input", {name: "max_iterations", type: "number", min: "1", max: "50", step: "1", value: "3"});
  const threshold = h("input", {name: "performance_threshold", type: "number", min: "0", max: "1", step: "any"});
  const registerAs = h("input", {name: "register_as", maxlength: 100, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}"});
  const start = h("input", {type: "checkbox", name: "start", id: "start-now", checked: true});
  const hyper = Object.fromEntries(HYPERPARAMETERS.map(([key, , attrs]) => [key, h("input", {name: key, type: "number", ...attrs})]));
  const balance = h("input", {type: "checkbox", name: "balance_yes_no", id: "balance-yes-no"});
  const loraTargets = h("select", {name: "lora_targets"}, h("option", {value: ""}, "Default (attention projections)"),
    h("option", {value: "attention"}, "Attention projections"),
    h("option", {value: "all_linear"}, "Every linear layer (attention and MLP)"));
  const loop = h("fieldset", {disabled: true},
    h("legend", {}, "Continuous learning"),
    field("Maximum iterations", iterations),
    field("Stop at feedback accuracy (optional)", threshold,
      "Between 0 and 1: the loop stops once the feedback split's share of right answers reaches it (the test split is only reported)."));
  const syncMode = () => { loop.disabled = !continuous.checked; };
  standard.addEventListener("change", syncMode);
  continuous.addEventListener("change", syncMode);
  const syncRetrieval = () => { topK.disabled = statements.disabled = !kb.value; };
  kb.addEventListener("change", syncRetrieval);
  syncRetrieval();

  const submit = h("button", {type: "submit"}, "Create task");
  const form = h("form", {class: "card", "aria-labelledby": "new-task-heading"},
    field("Task name", name),
    h("fieldset", {class: "choices"}, h("legend", {}, "Kind"),
      h("div", {}, standard, h("label", {for: "mode-standard"}, "Standard: one round of optimize, train, evaluate")),
      h("div", {}, continuous, h("label", {for: "mode-continuous"}, "Continuous: loop on its bad cases"))),
    field("Dataset", dataset),
    field("Base model", model, "smollm2-135m-instruct, gemma3-270m (under the Gemma Terms of Use), or the absolute path of a local Hugging Face model folder."),
    field("Knowledge base (optional)", kb),
    field("Passages per question", topK, "With a knowledge base: 1 to 10 passages retrieved for each question."),
    field("Statements kept (optional)", statements,
      "With a knowledge base: cut the passages to this many statements nearest the question (1 to 20), in training and when asked. Empty: whole passages."),
    loop,
    h("fieldset", {class: "grid"}, h("legend", {}, "Hyperparameters (optional: empty means the default)"),
      HYPERPARAMETERS.map(([key, label, , hint]) => field(label, hyper[key], hint)),
      field("LoRA layers", loraTargets, "Which layers carry the adapter's weights."),
      h("div", {class: "check"}, balance,
        h("label", {for: "balance-yes-no"}, "Train \u201cYes\u201d and \u201cNo\u201d equally often (the yes/no rows of the rarer answer get more copies)"))),
    field("Register the final adapter as (optional)", registerAs, "A model name; by default the task's name."),
    h("div", {class: "check"}, start, h("label", {for: "start-now"}, "Start it right away")),
    submit);
  heading.id = "new-task-heading";

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const hyperparameters = {};
    for (const [key, input] of Object.entries(hyper)) if (input.value !== "") hyperparameters[key] = Number(input.value);
    if (balance.checked) hyperparameters.balance_yes_no = true;
    if (loraTargets.value) hyperparameters.lora_targets = loraTargets.value;
    const body = {task_name: name.value.trim(), dataset_id: dataset.value, model_name: model.value.trim(), hyperparameters,
                  retrieval_top_k: Number(topK.value || 3)};
    if (kb.value) body.knowledge_base_id = kb.value;
    if (kb.value && statements.value !== "") body.context_statements = Number(statements.value);
    if (registerAs.value.trim()) body.register_as = registerAs.value.trim();
    if (continuous.checked) {
      body.max_iterations = Number(iterations.value || 3);
      if (threshold.value !== "") body.performance_threshold = Number(threshold.value);
    }
    submit.disabled = true;
    try {
      const task = await post(`/api/v1/tasks/${continuous.checked ? "continuous" : "standard"}`, body);
      if (start.checked) {
        try {
          await post(`${taskPath(task.task_id)}/start`);
          flash({notice: `Task ${task.task_name} created and started.`});
        } catch (error) {
          flash({error: `Task ${task.task_name} was created but not started: ${error.message}`});
        }
      } else {
        flash({notice: `Task ${task.task_name} created; start it when you are ready.`});
      }
      navigate(`#/tasks/${encodeURIComponent(task.task_id)}`);
    } catch (error) {
      showError(error);
      submit.disabled = false;
    }
  });
  render(heading, form);
}

// --- one task, live ----------------------------------------------------------------------------------

/** The task, or a page that says it was not found (another organization's ids are not found either). */
async function taskOrNotFound(id) {
  try {
    return await get(taskPath(id));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    setTitle("Task not found");
    render(h("h1", {}, "Task not found"), h("p", {}, `${error.message}. It may have been deleted, or belong to another organization.`),
           h("p", {}, h("a", {href: "#/tasks"}, "Back to the tasks")));
    showError(error);
    return null;
  }
}

export async function taskPage({params: [id], signal, me}) {
  let task = await taskOrNotFound(id);
  if (!task) return;
  setTitle(task.task_name);

  const statusText = h("strong", {id: "task-status"}, task.status);
  const statusLine = h("p", {class: "status-line", "aria-live": "polite", "aria-atomic": "true"}, "Status: ", statusText);
  const streamState = h("p", {class: "hint", id: "stream-state"}, "Live updates: connecting…");
  const bar = h("progress", {id: "phase-progress", max: "1", value: "0", "aria-labelledby": "progress-label"});
  const progressText = h("span", {id: "progress-text"}, "");
  const progress = h("div", {class: "progress", "aria-live": "polite"},
    h("span", {id: "progress-label"}, "Phase progress"), bar, progressText);
  const controls = h("div", {class: "controls", role: "group", "aria-label": "Control the task"});
  const details = h("div", {});
  const executions = h("div", {});
  const reportArea = h("div", {});
  const feedbackArea = h("div", {});
  const feedbackSection = h("section", {"aria-labelledby": "feedback-heading", hidden: true},
    h("h2", {id: "feedback-heading"}, "Feedback round"), feedbackArea);
  const log = h("ol", {class: "log", id: "event-log"});

  const WAITING = {PENDING: "not started", LOOPING: "between iterations", SUSPENDED: "paused", OPTIMIZING: "optimizing the training data",
                   TRAINING: "training: starting", EVALUATING: "evaluating: starting", COMPLETED: "done", FAILED: "stopped", CANCELLED: "stopped"};

  function setStatus(status, fromStream) {
    const changed = status !== statusText.textContent || !statusText.className;
    task.status = status;
    statusText.textContent = status;
    statusText.className = `status-${status.toLowerCase()}`;
    if (fromStream) statusText.dataset.updatedBy = "stream";
    if (changed) {  // a new phase: indeterminate until its first progress event
      if (status === "COMPLETED") { bar.max = 1; bar.value = 1; }
      else if (TERMINAL.has(status) || status === "PENDING") { bar.max = 1; bar.value = 0; }
      else if (status !== "SUSPENDED") bar.removeAttribute("value");
      progressText.textContent = WAITING[status] || "";
    }
    renderControls();
    renderDetails();
    renderFeedbackRound();
  }

  /** On a completed task: train its adapter further on a dataset of corrected answers (a feedback round). */
  async function renderFeedbackRound() {
    feedbackSection.hidden = !can(me, "tasks:write") || task.status !== "COMPLETED";
    if (feedbackSection.hidden || feedbackArea.dataset.for === id) return;
    feedbackArea.dataset.for = id;
    let datasets;
    try {
      datasets = (await get("/api/v1/datasets", {limit: 200})).items.filter((d) => d.status === "READY" && !d.is_optimized);
    } catch (error) {
      if (!signal.aborted) showError(error);
      return;
    }
    const dataset = h("select", {name: "corrections_dataset_id", required: true},
      datasets.map((d) => h("option", {value: d.dataset_id}, `${d.name} (${d.sample_count} rows, version ${d.version})`)));
    const version = h("input", {name: "corrections_dataset_version", type: "number", min: "1", step: "1"});
    const name = h("input", {name: "feedback_task_name", maxlength: 200});
    const submit = h("button", {type: "submit"}, "Start a feedback round");
    const form = h("form", {class: "card", "aria-labelledby": "feedback-heading"},
      h("p", {class: "hint"}, "Answers rated down and corrected in the question-answering history, exported as a dataset, ",
        "train this task's adapter further in a new task that starts at once. A row that copies a held-out question is left out."),
      field("Corrections dataset", dataset),
      field("Its version (optional)", version, "Empty means its newest version."),
      field("Name of the new task (optional)", name),
      submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {dataset_id: dataset.value};
      if (version.value !== "") body.dataset_version = Number(version.value);
      if (name.value.trim()) body.task_name = name.value.trim();
      submit.disabled = true;
      try {
        const child = await post(`${taskPath(id)}/feedback-rounds`, body);
        flash({notice: `Feedback round ${child.task_name} started.`});
        navigate(`#/tasks/${encodeURIComponent(child.task_id)}`);
      } catch (error) {
        showError(error);
        submit.disabled = false;
      }
    });
    feedbackArea.replaceChildren(datasets.length ? form
      : h("p", {class: "empty"}, "No dataset is ready to train on. Export corrected answers from the question-answering history first."));
  }

  function showProgress(p) {
    const parts = [`Iteration ${p.iteration}`, p.phase.toLowerCase()];
    if (p.stage && p.stage !== p.phase.toLowerCase()) parts.push(p.stage);
    if (p.total_steps) {
      bar.max = p.total_steps;
      bar.value = p.step ?? 0;
      parts.push(`step ${p.step ?? 0} of ${p.total_steps}`);
    } else if (p.total) {
      bar.max = p.total;
      bar.value = p.done ?? 0;
      if (!/\d+\/\d+/.test(p.stage || "")) parts.push(`${p.done ?? 0} of ${p.total}`);  // a stage like "test 16/47" says it already
    }
    if (typeof p.loss === "number") parts.push(`loss ${p.loss.toFixed(3)}`);
    if (typeof p.tokens_per_second === "number") parts.push(`${Math.round(p.tokens_per_second)} tokens/s`);
    progressText.textContent = parts.join(" · ");
  }

  function renderControls() {
    if (!can(me, "tasks:write") || TERMINAL.has(task.status)) { controls.replaceChildren(); return; }
    const button = (action, label, enabled) => h("button", {type: "button", disabled: !enabled, onclick: () => act(action)}, label);
    const s = task.status;
    controls.replaceChildren(...[
      s === "PENDING" ? button("start", "Start", true) : null,
      button("pause", "Pause", PHASES.has(s) || s === "LOOPING"),
      button("resume", "Resume", s === "SUSPENDED"),
      button("cancel", "Cancel", !TERMINAL.has(s))].filter(Boolean));
  }

  async function act(action) {
    for (const b of controls.querySelectorAll("button")) b.disabled = true;
    try {
      const answer = await post(`${taskPath(id)}/${action}`);
      showNotice(`${answer.detail}.`);
      if (answer.status !== task.status && !TERMINAL.has(task.status)) setStatus(answer.status, false);
    } catch (error) {
      showError(error);
    }
    renderControls();
  }

  function renderDetails() {
    details.replaceChildren(facts([
      ["Mode", task.mode.toLowerCase()],
      ["Base model", task.model_name],
      ["Dataset", [h("a", {href: `#/datasets/${encodeURIComponent(task.dataset_id)}`}, task.dataset_id),
        task.dataset_version ? ` version ${task.dataset_version}` : ""]],
      ["Lineage", h("a", {href: lineageHref("task", task.id)}, "what it came from and what came of it")],
      ["Knowledge base", task.knowledge_base_id ? h("a", {href: `#/knowledge/${encodeURIComponent(task.knowledge_base_id)}`}, task.knowledge_base_id) : null],
      ["Passages", task.knowledge_base_id
        ? `${task.retrieval_top_k} per question, ${task.context_statements ? `cut to the ${task.context_statements} statement${task.context_statements === 1 ? "" : "s"} nearest it` : "whole"}`
        : null],
      ["Iteration", `${task.current_iteration} of ${task.max_iterations}`],
      ["Stops at feedback accuracy", task.performance_threshold],
      ["Test score", score(task.latest_score)],
      ["Base model's test score", score(task.baseline_score)],
      ["Change against the base model", task.latest_score != null && task.baseline_score != null ? signed(task.latest_score - task.baseline_score) : null],
      ["Hyperparameters", Object.keys(task.hyperparameters || {}).length
        ? Object.entries(task.hyperparameters).map(([k, v]) => `${k} ${v}`).join(", ") : "defaults"],
      ["Continues task", task.parent_task_id ? h("a", {href: `#/tasks/${encodeURIComponent(task.parent_task_id)}`}, task.parent_task_id) : null],
      ["Error", task.error ? h("span", {class: "error-text"}, task.error) : null],
      ["Created", when(task.created_at)],
      ["Updated", when(task.updated_at)],
      ["Run in Temporal", task.workflow_url ? h("a", {href: task.workflow_url, rel: "noopener", target: "_blank"}, "Open the run in the Temporal Web UI") : null],
    ]));
  }

  async function loadExecutions() {
    try {
      const rows = await get(`${taskPath(id)}/executions`);
      executions.replaceChildren(table("Phases of each iteration", [
        ["Iteration", (e) => e.iteration],
        ["Phase", (e) => e.phase],
        ["Status", (e) => statusBadge(e.status)],
        ["Score", (e) => score(e.score)],
        ["Started", (e) => when(e.started_at)],
        ["Finished", (e) => when(e.completed_at)],
        ["Error", (e) => e.error || ""],
      ], rows, {empty: "No phase has run yet."}));
    } catch (error) {
      if (!signal.aborted) showError(error);
    }
  }

  async function loadReport() {
    try {
      const report = await get(`${taskPath(id)}/report`);
      reportArea.replaceChildren(
        h("p", {}, h("a", {href: `#/tasks/${encodeURIComponent(id)}/report`, class: "button"}, "Open the report")),
        iterationsTable(report), h("div", {class: "plot-row"}, scorePlot(report), lossPlot(report)));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        reportArea.replaceChildren(h("p", {class: "empty"}, "The report appears when the task has finished an iteration."));
      } else if (!signal.aborted) showError(error);
    }
  }

  function note(text) {
    log.prepend(h("li", {}, h("time", {}, new Date().toLocaleTimeString()), " ", text));
    while (log.children.length > 50) log.lastChild.remove();
  }

  function onEvent({event, data}) {
    if (event === "snapshot") {
      task = data.task;
      setStatus(task.status, true);
      if (task.progress) showProgress({iteration: task.current_iteration, phase: task.status, ...task.progress});
    } else if (event === "status") {
      task.current_iteration = data.iteration ?? task.current_iteration;
      setStatus(data.status, true);
      note(`${data.previous_status ? `${data.previous_status} → ` : ""}${data.status} (iteration ${data.iteration})`);
      loadExecutions();
    } else if (event === "progress") {
      showProgress(data);
    } else if (event === "score") {
      task.latest_score = data.score;
      if (data.baseline_score != null) task.baseline_score = data.baseline_score;
      renderDetails();
      const facts = data.test_fact_accuracy != null
        ? `answered ${score(data.test_fact_accuracy)} of the test split right (base model ${score(data.baseline_fact_accuracy)}); blended score ` : "scored ";
      note(`Iteration ${data.iteration} ${facts}${score(data.score)} on the test split (base model ${score(data.baseline_score)})`);
      loadExecutions();
      loadReport();
    } else if (event === "final") {
      Object.assign(task, {latest_score: data.latest_score ?? task.latest_score, error: data.error ?? task.error});
      setStatus(data.status, true);
      note(`Finished: ${data.status}${data.error ? `: ${data.error}` : ""}`);
      loadExecutions();
      if (data.report_available) loadReport();
    }
  }

  render(
    h("p", {class: "crumbs"}, h("a", {href: "#/tasks"}, "Tasks"), " / ", task.task_name),
    h("h1", {}, task.task_name),
    h("section", {"aria-labelledby": "now-heading"}, h("h2", {id: "now-heading"}, "Now"), statusLine, progress, streamState, controls),
    h("section", {"aria-labelledby": "details-heading"}, h("h2", {id: "details-heading"}, "Details"), details),
    feedbackSection,
    h("section", {"aria-labelledby": "report-heading"}, h("h2", {id: "report-heading"}, "Report"), reportArea),
    h("section", {"aria-labelledby": "phases-heading"}, h("h2", {id: "phases-heading"}, "Phases"), executions),
    h("section", {"aria-labelledby": "log-heading"}, h("h2", {id: "log-heading"}, "What happened while this page was open"),
      h("p", {class: "hint"}, "Status changes, scores and the end of the run, newest first, as the event stream reports them."), log));
  setStatus(task.status, false);
  if (task.progress) showProgress({iteration: task.current_iteration, phase: task.status, ...task.progress});
  loadExecutions();
  loadReport();

  const states = {connecting: "connecting…", reconnecting: "reconnecting…", live: "connected", disconnected: "connection lost, retrying…",
                  ended: "the task has finished"};
  streamEvents(`${taskPath(id)}/events`, {signal, onEvent, onState: (state) => { streamState.textContent = `Live updates: ${states[state] || state}`; }})
    .catch((error) => {
      if (signal.aborted) return;
      streamState.textContent = "Live updates: unavailable";
      showError(error);
    });
}

// --- the report --------------------------------------------------------------------------------------

export async function reportPage({params: [id]}) {
  const task = await taskOrNotFound(id);
  if (!task) return;
  setTitle(`Report: ${task.task_name}`);
  const crumbs = h("p", {class: "crumbs"}, h("a", {href: "#/tasks"}, "Tasks"), " / ",
                   h("a", {href: `#/tasks/${encodeURIComponent(id)}`}, task.task_name), " / report");
  let report;
  try {
    report = await get(`${taskPath(id)}/report`);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    render(crumbs, h("h1", {}, `Report: ${task.task_name}`), h("p", {}, `${error.message}. The report is written when the task has finished.`));
    return;
  }
  const final = report.final;
  // the iteration the task keeps (its best on the feedback split); reports from before that choice keep their last
  const kept = report.iterations.find((it) => it.iteration === final.iteration) ?? report.iterations[report.iterations.length - 1];
  render(
    crumbs,
    h("h1", {}, `Report: ${task.task_name}`),
    h("section", {"aria-labelledby": "summary-heading"}, h("h2", {id: "summary-heading"}, "Summary"),
      facts([
        ["Test answers right", final.fact_accuracy != null
          ? `${share(kept.scores.test)} (grade ${final.grade}, ${final.mode.replace("_", " ")})` : null],
        ["Kept iteration", final.iteration != null ? `${final.iteration} of ${report.iterations.length}: ${final.because}` : null],
        ["Base model's test answers right", report.baseline.scores.fact_accuracy != null ? share(report.baseline.scores) : null],
        ["Final blended test score", `${score(final.score)} (base model ${score(report.baseline.scores.overall)})`],
        ["Beats the base model", final.beats_baseline ? "yes" : "no"],
        ["Iterations", report.iterations.length],
        ["Why it stopped", report.task.stop_reason],
        ["Continues task", report.task.parent_task_id],
        ["Run in Temporal", task.workflow_url ? h("a", {href: task.workflow_url, rel: "noopener", target: "_blank"}, "Open the run in the Temporal Web UI") : null],
      ])),
    h("section", {"aria-labelledby": "wrong-heading"}, h("h2", {id: "wrong-heading"}, "Wrong answers of the kept iteration"),
      table("Test questions answered wrong, by their fact checks", [
        ["Question", (e) => e.question, {text: true}],
        ["Expected", (e) => e.expected, {text: true}],
        ["Answer", (e) => answer(e.got), {text: true}],
        ["Failed check", (e) => failedCheck(e), {text: true}],
        ["Answer in its passages", (e) => IN_PASSAGES[e.answer_in_passages] ?? "", {text: true}],
      ], report.wrong_answers || [], {empty: "No wrong answers (or no fact checks) on the test split."})),
    h("section", {"aria-labelledby": "iterations-heading"}, h("h2", {id: "iterations-heading"}, "Iterations against the base model"),
      iterationsTable(report)),
    h("section", {"aria-labelledby": "plots-heading", class: "plots"}, h("h2", {id: "plots-heading"}, "Plots"),
      h("div", {class: "plot-row"}, scorePlot(report), lossPlot(report))),
    h("section", {"aria-labelledby": "followup-heading"}, h("h2", {id: "followup-heading"}, "From each bad case to its score change"),
      h("p", {class: "hint"}, "Each round mines bad cases, makes targeted training examples for them, trains, and scores them again."),
      followups(report)),
    h("section", {"aria-labelledby": "examples-heading"}, h("h2", {id: "examples-heading"}, "Examples side by side"),
      table("Test questions: the base model and the tuned model", [
        ["Question", (e) => e.question, {text: true}],
        ["Expected", (e) => e.expected, {text: true}],
        ["Base model", (e) => `${verdict(e.base_right)}${e.base_answer ?? ""}`, {text: true}],
        ["Tuned model", (e) => `${verdict(e.tuned_right)}${e.tuned_answer ?? ""}`, {text: true}],
      ], report.side_by_side, {empty: "No examples in the report."})));
}

function share(scores) {
  if (scores?.fact_accuracy == null) return "";
  const [low, high] = scores.fact_accuracy_interval || [];
  return `${score(scores.fact_accuracy, 3)} (${scores.right}/${scores.judged}${low != null ? `, 95% ${score(low, 2)}–${score(high, 2)}` : ""})`;
}

// whether the passages a wrong answer was given state its facts: a misreading, or a retrieval miss
const IN_PASSAGES = {true: "yes: misread", false: "no: not retrieved"};

function verdict(right) {
  return right == null ? "" : right ? "✓ " : "✗ ";
}

function failedCheck(example) {
  const failed = (example.checks || []).find((c) => !c.passed);
  return failed ? `${failed.check.type}: ${failed.detail}` : "";
}

function otherModes(report) {
  const mode = report.final.mode;
  return Object.keys(report.baseline.modes || {}).filter((m) => m !== mode);
}

function iterationsTable(report) {
  const modes = otherModes(report);
  const base = {iteration: "Base model", scores: {test: report.baseline.scores, feedback: report.baseline.feedback_scores},
                modes: report.baseline.modes || {}, base: true};
  const rows = [base, ...report.iterations];
  const s = (key) => (row) => score(row.scores.test?.[key], 3);
  return table(`Test split (${report.final.mode.replace("_", " ")}) per iteration, against the base model`, [
    ["Iteration", (r) => r.iteration],
    ["Answers right", (r) => h("strong", {}, share(r.scores.test))],
    ["Change vs base", (r) => r.base ? "" : signed(r.comparison?.baseline?.test?.fact_accuracy_delta, 3)],
    ["Feedback right", (r) => share(r.scores.feedback)],
    ...modes.map((m) => [`Right, ${m.replace("_", " ")}`, (r) => share(r.modes?.[m]?.test)]),
    ["Exact match", s("exact_match")],
    ["Token F1", s("token_f1")],
    ["BLEU", s("bleu")],
    ["ROUGE-L", s("rouge_l")],
    ["Blended", (r) => score(r.scores.test?.overall)],
    ["Blended change vs base", (r) => r.base ? "" : signed(r.comparison?.baseline?.test?.delta)],
    ["Feedback blended", (r) => score(r.scores.feedback?.overall)],
    ...modes.map((m) => [`Blended, ${m.replace("_", " ")}`, (r) => score(r.modes?.[m]?.test?.overall)]),
    ["Grade", (r) => r.headline?.grade ?? ""],
    ["Training", (r) => r.training
      ? `${r.training.steps} steps, ${Math.round(r.training.tokens_per_second)} tokens/s`
        + (r.training.precision ? `, ${r.training.precision}` : "")
      : ""],
  ], rows);
}

function scorePlot(report) {
  // the share of right answers where the questions have fact checks, the blended score for reports from before them
  const key = report.baseline.scores.fact_accuracy != null ? "fact_accuracy" : "overall";
  const what = key === "fact_accuracy" ? "share of test answers right" : "overall score";
  const base = report.baseline.scores[key];
  const baseFeedback = report.baseline.feedback_scores[key];
  const points = (split, first) => [[0, first], ...report.iterations.map((it) => [it.iteration, it.scores[split]?.[key]])];
  const last = report.iterations[report.iterations.length - 1]?.scores.test?.[key];
  return linePlot({
    title: `${what[0].toUpperCase()}${what.slice(1)} per iteration (0 = base model)`,
    description: `Test ${what} from ${score(base)} (base model) to ${score(last)} after ${report.iterations.length} iteration(s).`,
    xLabel: "iteration", yLabel: what, integerX: true, yMin: 0,
    series: [{name: "test", points: points("test", base)}, {name: "feedback", points: points("feedback", baseFeedback)},
             {name: "base model (test)", dashed: true, points: [[0, base], [Math.max(1, report.iterations.length), base]]}],
  });
}

function lossPlot(report) {
  return linePlot({
    title: "Training loss per step",
    description: report.iterations.map((it) => {
      const curve = it.loss_curve || [];
      return curve.length ? `iteration ${it.iteration}: ${curve[0][1].toFixed(3)} to ${curve[curve.length - 1][1].toFixed(3)}` : "";
    }).filter(Boolean).join("; ") || "No losses recorded.",
    xLabel: "step", yLabel: "loss",
    series: report.iterations.map((it) => ({name: `iteration ${it.iteration}`, points: it.loss_curve || []})),
  });
}

function followups(report) {
  const rounds = report.iterations.filter((it) => it.bad_case_followup && it.bad_case_followup.length);
  if (!rounds.length) {
    const found = report.iterations.map((it) => `iteration ${it.iteration}: ${it.bad_cases} bad case(s)`).join("; ");
    return h("p", {class: "empty"}, `No follow-up yet: bad cases are followed up by the next iteration (${found || "none"}).`);
  }
  return rounds.map((it) => table(`Iteration ${it.iteration}: the bad cases of iteration ${it.iteration - 1}, followed up`, [
    ["Bad case", (f) => f.question, {text: true}],
    ["Split", (f) => f.split],
    ["Targeted examples", (f) => targeted(f)],
    ["Right now", (f) => f.right_after == null ? "" : f.right_after ? "yes" : "no"],
    ["Blended before", (f) => score(f.before, 3)],
    ["After", (f) => score(f.after, 3)],
    ["Change", (f) => h("span", {class: f.delta > 0 ? "up" : f.delta < 0 ? "down" : ""}, signed(f.delta, 3))],
  ], it.bad_case_followup));
}

function targeted(f) {
  const ids = f.targeted_training_examples || [];
  const chunks = f.chunk_ids || [];
  if (!ids.length && !chunks.length) return "none";
  const summary = `${ids.length} example(s)${chunks.length ? ` from ${chunks.length} chunk(s)` : ""}`;
  return h("details", {}, h("summary", {}, summary),
    h("ul", {class: "ids"}, ids.map((x) => h("li", {}, h("code", {}, x))), chunks.map((c) => h("li", {}, "chunk ", h("code", {}, c)))));
}
