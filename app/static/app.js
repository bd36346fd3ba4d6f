// knowledge-search page: search, ask (streamed) and upload, through the public API only.
// Server text is always inserted as text nodes, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
// The app root, whether served at / or under a gateway prefix such as /kb/.
const BASE = new URL(location.pathname.endsWith("/") ? location.pathname : location.pathname + "/", location.origin);
const KEY_STORAGE = "knowledge-search.api-key";
let conversationId = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// --- API ------------------------------------------------------------------------------------------------
function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function problemText(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function api(path, options = {}) {
  const response = await fetch(new URL(path, BASE), { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    const text = await problemText(response);
    throw new Error(response.status === 401 ? `${text} — paste an API key at the top.` : text);
  }
  return response.status === 204 ? null : response.json();
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), 6000);
}

const collection = () => $("collection").value.trim() || null;

// --- highlighting -------------------------------------------------------------------------------------
const STOPWORDS = new Set("a an and are as at be by do does for from how i in is it of on or the to was what when where which who why with".split(" "));
const SEGMENTER = typeof Intl.Segmenter === "function" ? new Intl.Segmenter("ja", { granularity: "word" }) : null;
const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function queryTerms(query) {
  const words = SEGMENTER
    ? [...SEGMENTER.segment(query)].filter((s) => s.isWordLike).map((s) => s.segment)
    : query.split(/[\s\p{P}]+/u);
  const terms = new Set();
  for (const raw of words) {
    const w = raw.toLowerCase();
    if (!w || STOPWORDS.has(w)) continue;
    if (/^[\p{Script=Hiragana}ー]$/u.test(w)) continue; // particles: は, の, を…
    if (/^[\p{Script=Latin}\d]+$/u.test(w)) {
      if (w.length < 2) continue;
      terms.add(w.length > 4 ? w.replace(/(ies|es|s|ing|ed)$/, "") : w); // crude stem: match by prefix
    } else {
      terms.add(w);
    }
  }
  return [...terms].sort((a, b) => b.length - a.length);
}

function highlightRegExp(query) {
  const parts = queryTerms(query).map((t) =>
    // Latin terms match from a word's start to its end (the stem "employe" marks "employees" whole)
    /^[\p{Script=Latin}\d]/u.test(t) ? `(?<![\\p{L}\\p{N}])${escapeRegExp(t)}[\\p{L}\\p{N}]*` : escapeRegExp(t));
  return parts.length ? new RegExp(parts.join("|"), "giu") : null;
}

function highlighted(text, regexp) {
  const frag = document.createDocumentFragment();
  if (!regexp) {
    frag.append(text);
    return frag;
  }
  let last = 0;
  let mark = null;
  for (const m of text.matchAll(regexp)) {
    if (!m[0]) continue;
    if (mark && m.index === last) mark.append(m[0]); // 有給 + 休暇 make one mark
    else frag.append(text.slice(last, m.index), (mark = el("mark", {}, m[0])));
    last = m.index + m[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

function where(source) {
  if (!source) return "";
  const parts = [];
  if (source.heading_path && source.heading_path.length) parts.push(source.heading_path.join(" › "));
  if (source.page) parts.push(`p. ${source.page}`);
  return parts.join(" · ");
}

// --- search --------------------------------------------------------------------------------------------
async function search(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  const status = $("search-status");
  status.textContent = "Searching…";
  try {
    const body = { query, mode: $("mode").value, top_k: 10, collection: collection() };
    const data = await api("v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const regexp = highlightRegExp(query);
    $("results").replaceChildren(...data.results.map((r) => resultItem(r, regexp)));
    status.textContent = `${data.results.length} result${data.results.length === 1 ? "" : "s"} in ${Math.round(data.took_ms)} ms`;
  } catch (err) {
    status.textContent = "";
    toast(err.message);
  }
}

function resultItem(r, regexp) {
  const text = el("p", { class: "text clamp", title: "Click to expand" }, highlighted(r.text, regexp));
  text.addEventListener("click", () => text.classList.toggle("clamp"));
  return el("li", { class: "result" },
    el("div", { class: "result-head" },
      el("span", { class: "title" }, r.title),
      el("span", { class: "badge" }, r.collection),
      el("span", { class: "score", title: "score" }, r.score.toFixed(3))),
    where(r.source) ? el("div", { class: "where muted" }, where(r.source)) : null,
    text);
}

// --- chat ----------------------------------------------------------------------------------------------
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let carry = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    let chunk = carry + value;
    carry = chunk.endsWith("\r") ? "\r" : ""; // a CRLF may be split across reads
    if (carry) chunk = chunk.slice(0, -1);
    buffer += chunk.replace(/\r\n|\r/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) yield { event: name, data: JSON.parse(data.join("\n")) };
    }
  }
}

function renderAnswer(target, text, citations, question) {
  const byN = new Map(citations.map((c) => [c.n, c]));
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    const c = byN.get(Number(m[1]));
    if (!c) continue;
    nodes.push(text.slice(last, m.index));
    nodes.push(el("button", { type: "button", class: "cite", title: c.title, onclick: () => openPassage(c, question) }, `[${c.n}]`));
    last = m.index + m[0].length;
  }
  nodes.push(text.slice(last));
  target.replaceChildren(...nodes);
}

function openPassage(c, question) {
  $("passage-title").textContent = `[${c.n}] ${c.title}`;
  $("passage-where").textContent = where(c.source);
  $("passage-quote").replaceChildren(highlighted(c.quote, question ? highlightRegExp(question) : null));
  $("passage").showModal();
}

async function ask(event) {
  event.preventDefault();
  const message = $("question").value.trim();
  if (!message) return;
  const log = $("conversation");
  log.querySelector(".empty")?.remove();
  const answer = el("div", { class: "answer streaming" });
  const meta = el("div", { class: "meta muted" }, "Thinking…");
  const sources = el("ol", { class: "sources" });
  log.append(el("div", { class: "turn" }, el("div", { class: "question" }, message), answer, sources, meta));
  $("question").value = "";
  answer.scrollIntoView({ block: "nearest" });
  try {
    const response = await fetch(new URL("v1/chat", BASE), {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ message, stream: true, collection: collection(), conversation_id: conversationId }),
    });
    if (!response.ok) throw new Error(await problemText(response));
    let text = "";
    let candidates = [];
    for await (const { event: kind, data } of sseEvents(response)) {
      if (kind === "citations") {
        candidates = data.citations;
        conversationId = data.conversation_id;
        meta.textContent = "Answering…";
      } else if (kind === "delta") {
        text += data.text;
        renderAnswer(answer, text, candidates, message);
      } else if (kind === "done") {
        renderAnswer(answer, data.answer, data.citations, message);
        sources.replaceChildren(...data.citations.map((c) =>
          el("li", {}, el("button", { type: "button", class: "link", onclick: () => openPassage(c, message) },
            `[${c.n}] ${c.title}`), where(c.source) ? el("span", { class: "muted" }, ` — ${where(c.source)}`) : null)));
        meta.textContent = `${data.grounded ? "Grounded in the documents" : "Not covered by the documents"} · ${data.model}`;
      } else if (kind === "error") {
        throw new Error(data.detail || data.title);
      }
    }
  } catch (err) {
    meta.textContent = "";
    answer.append(el("p", { class: "error" }, err.message));
  } finally {
    answer.classList.remove("streaming");
  }
}

// --- upload and documents ------------------------------------------------------------------------------
async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("collection", collection() || "default");
  const bar = el("progress", { max: "1", value: "0" });
  const state = el("span", { class: "state" }, "uploading…");
  const item = el("li", {}, el("div", { class: "row spread" }, el("span", { class: "name" }, file.name), state), bar);
  $("uploads").prepend(item);
  try {
    const response = await fetch(new URL("v1/documents?wait=false", BASE), { method: "POST", headers: headers(), body: form });
    if (!response.ok) throw new Error(await problemText(response));
    let doc = await response.json();
    $("upload-form").reset();
    while (doc.status === "queued" || doc.status === "processing") {
      const job = doc.job;
      state.textContent = job && job.progress_total ? `${doc.status} ${job.progress_done}/${job.progress_total}` : doc.status;
      if (job && job.progress_total) bar.value = job.progress_done / job.progress_total;
      await new Promise((r) => setTimeout(r, 500));
      doc = await api(`v1/documents/${encodeURIComponent(doc.id)}`);
    }
    bar.value = 1;
    state.textContent = doc.status === "indexed" ? `indexed · ${doc.chunk_count} chunks` : `failed: ${doc.error}`;
    item.classList.add(doc.status === "indexed" ? "ok" : "failed");
    refreshDocuments();
  } catch (err) {
    state.textContent = "failed";
    item.classList.add("failed");
    toast(err.message);
  }
}

async function refreshDocuments() {
  try {
    const page = await api("v1/documents?limit=100");
    const names = [...new Set(page.items.map((d) => d.collection))].sort();
    $("collections").replaceChildren(...names.map((n) => el("option", { value: n })));
    $("documents").replaceChildren(...page.items.map((d) =>
      el("li", { class: `doc ${d.status}` },
        el("span", { class: "title", title: d.filename || d.title }, d.title),
        el("span", { class: "muted small" }, `${d.collection} · ${d.status === "indexed" ? `${d.chunk_count} chunks` : d.status}`))));
    if (!page.items.length) $("documents").replaceChildren(el("li", { class: "muted" }, "No documents yet."));
  } catch (err) {
    $("documents").replaceChildren(el("li", { class: "muted" }, err.message));
  }
}

// --- wiring --------------------------------------------------------------------------------------------
function selectTab(name) {
  for (const tab of ["search", "ask"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
  (name === "search" ? $("query") : $("question")).focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    refreshDocuments();
  });
  $("tab-search").addEventListener("click", () => selectTab("search"));
  $("tab-ask").addEventListener("click", () => selectTab("ask"));
  $("search-form").addEventListener("submit", search);
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault(); // Enter asks, Shift+Enter is a new line; Enter that confirms IME input is left alone
      $("ask-form").requestSubmit();
    }
  });
  $("new-conversation").addEventListener("click", () => {
    conversationId = null;
    $("conversation").replaceChildren(el("p", { class: "muted empty" }, "New conversation."));
  });
  $("upload-form").addEventListener("submit", upload);
  $("refresh").addEventListener("click", refreshDocuments);
  refreshDocuments();
});
