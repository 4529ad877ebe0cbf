// cds-service workbench: the playground's editor and the rule page's simulate button.
// Builds every piece of the page with DOM calls and textContent (never innerHTML), so nothing
// a rule, a card or a patient record holds can run as markup.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(method, path, body) {
    const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  function outcomeList(result) {
    // An OperationOutcome (our error answers): one line per issue, naming its field.
    const issues = (result.data && result.data.issue) || [];
    const items = issues.map((i) => el("li", {}, (i.expression ? i.expression.join(", ") + ": " : "") + (i.diagnostics || i.code)));
    return el("div", { class: "issues", role: "alert" },
      el("strong", {}, `Error ${result.status}`), items.length ? el("ul", {}, items) : null);
  }

  // -- a small, safe Markdown subset for card details (as EHRs render them) -------------------
  function inline(text) {
    const out = [];
    const pattern = /(\*\*[^*]+\*\*|__[^_]+__|\*[^*\s][^*]*\*|_[^_\s][^_]*_|`[^`]+`|\[[^\]]+\]\([^)\s]+\))/g;
    let at = 0;
    for (const match of text.matchAll(pattern)) {
      if (match.index > at) out.push(text.slice(at, match.index));
      const token = match[0];
      if (token.startsWith("**") || token.startsWith("__")) out.push(el("strong", {}, token.slice(2, -2)));
      else if (token.startsWith("`")) out.push(el("code", {}, token.slice(1, -1)));
      else if (token.startsWith("[")) {
        const label = token.slice(1, token.indexOf("]"));
        const url = token.slice(token.indexOf("(") + 1, -1);
        out.push(/^https?:\/\//.test(url) ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, label) : label);
      } else out.push(el("em", {}, token.slice(1, -1)));
      at = match.index + token.length;
    }
    if (at < text.length) out.push(text.slice(at));
    return out;
  }

  function markdown(text) {
    const box = el("div", { class: "detail" });
    for (const block of String(text || "").split(/\n\s*\n/)) {
      const lines = block.split("\n").filter((l) => l.trim());
      if (!lines.length) continue;
      if (lines.every((l) => /^\s*[-*+]\s+/.test(l))) {
        box.append(el("ul", {}, lines.map((l) => el("li", {}, inline(l.replace(/^\s*[-*+]\s+/, ""))))));
      } else if (lines.every((l) => /^\s*\d+[.)]\s+/.test(l))) {
        box.append(el("ol", {}, lines.map((l) => el("li", {}, inline(l.replace(/^\s*\d+[.)]\s+/, ""))))));
      } else if (/^#{1,6}\s/.test(lines[0])) {
        box.append(el("p", {}, el("strong", {}, inline(lines[0].replace(/^#+\s*/, "")))));
        if (lines.length > 1) box.append(el("p", {}, inline(lines.slice(1).join(" "))));
      } else {
        box.append(el("p", {}, inline(lines.join(" "))));
      }
    }
    return box;
  }

  function renderCard(card) {
    const indicator = ["info", "warning", "critical"].includes(card.indicator) ? card.indicator : "info";
    const actions = el("div", { class: "actions" });
    for (const s of card.suggestions || []) {
      const what = (s.actions || []).map((a) => `${a.type} ${(a.resource && a.resource.resourceType) || a.resourceId || ""}`.trim()).join("; ");
      actions.append(el("span", { class: "button", title: what, "data-kind": "suggestion" }, s.label || "Suggestion"));
    }
    for (const link of card.links || []) {
      const safe = /^https?:\/\//.test(link.url || "");
      actions.append(el(safe ? "a" : "span", { class: "button", href: safe ? link.url : null, target: "_blank", rel: "noopener noreferrer", "data-kind": link.type || "absolute" },
        (link.type === "smart" ? "App: " : "") + (link.label || link.url)));
    }
    const source = card.source || {};
    return el("article", { class: `card ${indicator}`, "aria-label": "CDS card" },
      el("div", { class: "indicator" }, indicator),
      el("div", { class: "summary" }, card.summary || ""),
      card.detail ? markdown(card.detail) : null,
      source.label ? el("div", { class: "source" }, "Source: ",
        /^https?:\/\//.test(source.url || "") ? el("a", { href: source.url, target: "_blank", rel: "noopener noreferrer" }, source.label) : source.label) : null,
      actions.childNodes.length ? actions : null);
  }

  function truth(value) {
    const text = value === null || value === undefined ? "not evaluated" : String(value);
    return el("span", { class: `truth-${value === true ? "true" : value === false ? "false" : "null"}` }, text);
  }

  function tree(node) {
    if (node.kind === "leaf") return el("li", {}, `${node.id}: `, truth(node.value), el("code", { class: "muted" }, `  ${node.expression}`));
    return el("li", {}, `${node.kind}: `, truth(node.value), el("ul", { class: "tree" }, node.members.map(tree)));
  }

  function renderTrace(trace, call) {
    const box = el("div", {});
    box.append(el("p", {}, `Status: `, el("strong", { id: "trace-status" }, trace.status), trace.reason ? ` (${trace.reason})` : "",
      call ? ` · ${call.hook} at ${call.at}` : ""));
    if (trace.error) box.append(el("div", { class: "issues" }, `Raised by ${trace.error.at} at ${trace.error.location}: ${trace.error.detail || ""}`));
    box.append(el("h3", {}, "Conditions"), el("ul", { class: "tree" }, tree(trace.conditions)));
    box.append(el("h3", {}, "Prefetch"), el("table", {}, el("tbody", {}, trace.prefetch.map((p) => el("tr", {}, el("td", {}, p.key), el("td", {}, p.outcome))))));
    if (Object.keys(trace.scores).length) {
      box.append(el("h3", {}, "Scores"), el("table", {}, el("tbody", {}, Object.entries(trace.scores).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))))));
    }
    box.append(el("h3", {}, "Bindings"), el("table", {}, el("tbody", {}, trace.bindings.map((b) =>
      el("tr", {}, el("td", {}, b.name), el("td", {}, b.computed === "not-evaluated" ? "not evaluated" : b.value + (b.computed === "display-only" ? "  (display only)" : "")))))));
    return box;
  }

  // -- the playground -----------------------------------------------------------------------------
  function setupEditor(textarea, gutter) {
    const marks = new Map();
    function draw() {
      const count = textarea.value.split("\n").length;
      gutter.replaceChildren();
      for (let i = 1; i <= count; i++) {
        const mark = marks.get(i);
        gutter.append(el("span", { class: mark || null, title: mark ? `${mark} on line ${i}` : null }, String(i)), "\n");
      }
      gutter.scrollTop = textarea.scrollTop;
    }
    textarea.addEventListener("scroll", () => { gutter.scrollTop = textarea.scrollTop; });
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
        textarea.dispatchEvent(new Event("input"));
      }
    });
    return {
      draw,
      mark(issues) {
        marks.clear();
        for (const i of issues) if (marks.get(i.line) !== "err") marks.set(i.line, i.severity === "error" ? "err" : "warn");
        draw();
      },
      goto(line, col) {
        const lines = textarea.value.split("\n");
        let offset = 0;
        for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
        offset += Math.max(0, col - 1);
        textarea.focus();
        textarea.setSelectionRange(offset, offset);
        const height = textarea.scrollHeight / Math.max(lines.length, 1);
        textarea.scrollTop = Math.max(0, (line - 5) * height);
      },
    };
  }

  function playground() {
    const ruleBox = document.getElementById("rule-editor");
    if (!ruleBox) return;
    const testsBox = document.getElementById("tests-editor");
    const ruleEditor = setupEditor(ruleBox, document.getElementById("rule-gutter"));
    const testsEditor = setupEditor(testsBox, document.getElementById("tests-gutter"));
    const lintBox = document.getElementById("lint");
    const cardBox = document.getElementById("card");
    const traceBox = document.getElementById("trace");
    const patient = document.getElementById("patient");
    const request = document.getElementById("request");
    const at = document.getElementById("at");
    let lintTimer = null;
    let lintSeq = 0;
    let evalTimer = null;

    function draft() { return { rule: ruleBox.value, tests: testsBox.value.trim() ? testsBox.value : null }; }

    function showIssues(issues) {
      ruleEditor.mark(issues.filter((i) => i.file === "rule"));
      testsEditor.mark(issues.filter((i) => i.file === "tests"));
      if (!issues.length) { lintBox.replaceChildren(el("span", { class: "ok" }, "No problems.")); return; }
      const items = issues.map((i) => {
        const link = el("a", { href: "#" }, `${i.file} ${i.line}:${i.col}`);
        link.addEventListener("click", (event) => { event.preventDefault(); (i.file === "tests" ? testsEditor : ruleEditor).goto(i.line, i.col); });
        return el("li", { class: i.severity }, link, `: ${i.field ? i.field + ": " : ""}${i.message}`, i.validator ? ` (${i.validator})` : "");
      });
      const errors = issues.filter((i) => i.severity === "error").length;
      lintBox.replaceChildren(el("strong", {}, `${errors} error(s), ${issues.length - errors} warning(s)`), el("ul", {}, items));
    }

    async function lint() {
      const seq = ++lintSeq;
      const result = await api("POST", "/workbench/api/playground/lint", draft());
      if (seq !== lintSeq) return null; // a newer edit is being checked
      if (!result.ok) { lintBox.replaceChildren(outcomeList(result)); return null; }
      showIssues(result.data.issues);
      return result.data;
    }

    async function evaluate() {
      const body = draft();
      if (request.value.trim()) {
        try { body.request = JSON.parse(request.value); } catch (e) {
          cardBox.replaceChildren(el("div", { class: "issues", role: "alert" }, `The pasted request is not JSON: ${e.message}`));
          return;
        }
      } else if (patient.value) body.patient = patient.value;
      else { cardBox.replaceChildren(el("p", { class: "empty" }, "Choose a patient or paste a request.")); return; }
      if (at.value) body.at = new Date(at.value + "Z").toISOString();
      cardBox.replaceChildren(el("p", { class: "empty" }, "Evaluating…"));
      const result = await api("POST", "/workbench/api/playground/evaluate", body);
      if (!result.ok) { cardBox.replaceChildren(outcomeList(result)); traceBox.replaceChildren(); return; }
      const data = result.data;
      showIssues(data.issues);
      if (!data.ok) {
        cardBox.replaceChildren(el("div", { class: "issues", role: "alert" }, "The draft has errors: fix them to see its card."));
        traceBox.replaceChildren();
        return;
      }
      const trace = data.trace;
      cardBox.replaceChildren(trace.card ? renderCard(trace.card) : el("div", { class: "nocard" }, `No card: the rule is ${trace.status}${trace.reason ? " (" + trace.reason + ")" : ""}.`));
      traceBox.replaceChildren(renderTrace(trace, data.call));
    }

    function changed() {
      clearTimeout(lintTimer);
      lintTimer = setTimeout(async () => {
        const data = await lint();
        if (data && !data.ok && cardBox.childNodes.length) {
          // The card shown is the last good draft's: never leave it looking current.
          cardBox.replaceChildren(el("div", { class: "issues", role: "alert" }, "The draft has errors: fix them to see its card."));
          traceBox.replaceChildren();
        }
        if (data && data.ok && (patient.value || request.value.trim())) {
          clearTimeout(evalTimer);
          evalTimer = setTimeout(evaluate, 50);
        }
      }, 350);
    }

    ruleBox.addEventListener("input", () => { ruleEditor.draw(); changed(); });
    testsBox.addEventListener("input", () => { testsEditor.draw(); changed(); });
    document.getElementById("evaluate").addEventListener("click", evaluate);
    patient.addEventListener("change", evaluate);

    document.getElementById("run-tests").addEventListener("click", async () => {
      const box = document.getElementById("tests-result");
      box.replaceChildren(el("p", { class: "empty" }, "Running tests…"));
      const result = await api("POST", "/workbench/api/playground/test", draft());
      if (!result.ok) { box.replaceChildren(outcomeList(result)); return; }
      const t = result.data.tests;
      showIssues(result.data.issues);
      box.replaceChildren(el("p", {}, el("strong", { id: "tests-summary" }, `${t.passed} passed, ${t.failed} failed`)),
        el("ul", { class: "cases" }, t.cases.map((c) => el("li", { class: `case case-${c.ok ? "passed" : "failed"}` },
          el("span", { class: "mark" }, c.ok ? "passed" : "failed"), ` ${c.name} (line ${c.line}, ${c.status || "–"})`,
          c.ok ? null : el("pre", {}, c.failures.join("\n") + (c.diff ? "\n\n" + c.diff : ""))))));
    });

    const simulate = document.getElementById("simulate");
    simulate.addEventListener("click", async () => {
      const box = document.getElementById("simulation-result");
      simulate.disabled = true;
      box.replaceChildren(el("p", { class: "empty" }, "Simulating on the sample population…"));
      const result = await api("POST", "/workbench/api/playground/simulate", { rule: ruleBox.value });
      simulate.disabled = false;
      if (!result.ok) { box.replaceChildren(outcomeList(result)); return; }
      const { patients, rule, service } = result.data;
      if (!rule) { box.replaceChildren(el("p", {}, `${patients} patients: no call on this hook.`)); return; }
      const pct = (v) => `${(v * 100).toFixed(1)} %`;
      box.replaceChildren(el("table", {}, el("tbody", {},
        el("tr", {}, el("th", {}, "Patients"), el("td", {}, patients)),
        el("tr", {}, el("th", {}, "Calls"), el("td", {}, rule.calls)),
        el("tr", {}, el("th", {}, "Fired"), el("td", { id: "simulated-fired" }, rule.fired)),
        el("tr", {}, el("th", {}, "Fire rate"), el("td", { id: "simulated-rate" }, pct(rule.fireRate))),
        el("tr", {}, el("th", {}, "Card rate (this rule alone)"), el("td", {}, rule.draft
          ? `${pct(rule.fireRate)} once active (a draft's cards are shadow: never shown)`
          : service ? pct(service.cardRate) : "–")),
        el("tr", {}, el("th", {}, "Outcomes"), el("td", {}, Object.entries(rule.statuses).map(([k, v]) => `${k} ${v}`).join(", "))),
        rule.errors.length ? el("tr", {}, el("th", {}, "Errors"), el("td", {}, rule.errors.join("; "))) : null,
        el("tr", {}, el("th", {}, "Example patients"), el("td", {}, rule.examplePatients.join(", ") || "–")))));
    });

    api("GET", "/workbench/api/playground/patients").then((result) => {
      patient.replaceChildren(el("option", { value: "" }, result.ok && result.data.patients.length ? "(choose a patient)" : "(no sample population)"));
      if (!result.ok) return;
      for (const p of result.data.patients) patient.append(el("option", { value: p.id }, `${p.name} · ${p.gender || "?"} · ${p.birthDate || "?"}`));
    });
    ruleEditor.draw();
    testsEditor.draw();
    lint();
  }

  function rulePage() {
    for (const button of document.querySelectorAll("[data-simulate-rule]")) {
      button.addEventListener("click", async () => {
        button.disabled = true;
        const status = document.getElementById("simulate-status");
        status.textContent = "Simulating on the sample population…";
        const result = await api("POST", `/workbench/api/rules/${encodeURIComponent(button.dataset.simulateRule)}/simulate`, {});
        if (result.ok) { window.location.reload(); return; }
        button.disabled = false;
        status.replaceChildren(outcomeList(result));
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => { playground(); rulePage(); });
})();
