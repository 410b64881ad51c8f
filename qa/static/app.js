// The web chat page of the Chinese news QA service: plain DOM, no framework, no build step.
// Every piece of data from the server is put into the page as text nodes (never innerHTML).
"use strict";

(() => {
  const KEY_STORAGE = "qa.apiKey";
  const state = {
    turns: [], // the questions asked so far in this conversation (sent as history)
    busy: false,
    documents: new Map(), // doc_id -> Promise of the article JSON
    activeCite: null,
    openDoc: null, // {doc_id, title} of the article shown in the panel
    onlyDoc: null, // {doc_id, title}: questions search this article only
  };

  const $ = (id) => document.getElementById(id);

  /** Build an element: attributes (class, dataset, on*, others) and children (nodes or text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const bilingual = (zh, en) => [zh, " ", el("span", { class: "en" }, en)];

  // The server counts offsets in code points (Python); JavaScript strings count UTF-16 units.
  function codePointSlice(text, start, end) {
    const points = Array.from(text);
    return points.slice(start, end).join("");
  }

  function splitAt(text, start, end) {
    const points = Array.from(text);
    return [
      points.slice(0, start).join(""),
      points.slice(start, end).join(""),
      points.slice(end).join(""),
    ];
  }

  // -- API --------------------------------------------------------------------------------------------
  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || "";
    } catch (_) {
      return "";
    }
  }

  async function api(path, options) {
    const headers = Object.assign({ Accept: "application/json" }, (options && options.headers) || {});
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    let response;
    try {
      response = await fetch(path, Object.assign({}, options, { headers }));
    } catch (err) {
      throw new ApiError(0, "网络错误，无法连接服务 · Network error: the service cannot be reached");
    }
    return readJson(response);
  }

  async function readJson(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message =
        (body && body.error && body.error.message) ||
        (body && typeof body.detail === "string" && body.detail) ||
        `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  /**
   * POST /v1/ask accepting a stream of events: when a language model writes the answer, the server sends
   * `start` (the passages), one `delta` per checked sentence and `answer` (the whole response); otherwise
   * it answers JSON. Returns the whole answer either way.
   */
  async function askStreaming(body, onStart, onDelta) {
    const headers = { Accept: "text/event-stream, application/json", "Content-Type": "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    let response;
    try {
      response = await fetch("/v1/ask", { method: "POST", headers, body: JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, "网络错误，无法连接服务 · Network error: the service cannot be reached");
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream") || !response.body) return readJson(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let answer = null;
    const handle = (block) => {
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) return; // a comment (ping)
      const value = JSON.parse(data.join("\n"));
      if (name === "start") onStart(value);
      else if (name === "delta") onDelta(String(value.text || ""));
      else if (name === "answer") answer = value;
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
        let match;
        while ((match = /\r?\n\r?\n/.exec(buffer))) {
          handle(buffer.slice(0, match.index));
          buffer = buffer.slice(match.index + match[0].length);
        }
        if (done) break;
      }
    } catch (err) {
      throw new ApiError(0, "回答传输中断 · The answer was cut off: " + String(err));
    }
    if (buffer.trim()) handle(buffer);
    if (!answer) throw new ApiError(0, "回答传输中断 · The answer was cut off");
    return answer;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // -- the conversation -------------------------------------------------------------------------------
  const conversation = () => $("conversation");

  function scrollToBottom() {
    const box = conversation();
    box.scrollTop = box.scrollHeight;
  }

  function addUserTurn(question) {
    const welcome = $("welcome");
    if (welcome) welcome.hidden = true;
    const bubble = el(
      "div",
      { class: "turn user", "data-testid": "user-turn" },
      el("div", { class: "bubble" }, question),
    );
    conversation().append(bubble);
    scrollToBottom();
  }

  function addPending() {
    const node = el(
      "div",
      { class: "turn bot pending", "data-testid": "pending" },
      el("div", { class: "bubble" }, el("span", { class: "dots", "aria-hidden": "true" }), "正在检索 Searching…"),
    );
    conversation().append(node);
    scrollToBottom();
    return node;
  }

  function sectionLabel(passage) {
    if (passage.section === "related") {
      return el(
        "span",
        { class: "badge related", title: "这段文字是页面上另一篇新闻的预告 · A teaser of another article on the page" },
        ...bilingual("相关新闻预告", "related-news teaser"),
      );
    }
    return el("span", { class: "badge body" }, ...bilingual("正文", "body"));
  }

  /** The answer text with each [n] marker turned into a button that opens passage n. */
  function answerText(text, passages, turnId) {
    const box = el("div", { class: "answer-text", "data-testid": "answer-text" });
    for (const line of String(text || "").split("\n")) {
      if (!line.trim()) continue;
      const p = el("p");
      let last = 0;
      for (const match of line.matchAll(/\[(\d+)\]/g)) {
        p.append(line.slice(last, match.index));
        const rank = Number(match[1]);
        const passage = passages.find((x) => x.rank === rank);
        if (passage) {
          p.append(
            el(
              "button",
              {
                type: "button",
                class: "cite-ref",
                "data-testid": "cite-ref",
                dataset: { rank: String(rank), turn: turnId },
                title: `${passage.title}${passage.date ? "（" + passage.date + "）" : ""}`,
                onclick: () => openPassage(passage, rank, turnId),
              },
              `[${rank}]`,
            ),
          );
        } else {
          p.append(match[0]);
        }
        last = match.index + match[0].length;
      }
      p.append(line.slice(last));
      box.append(p);
    }
    return box;
  }

  function citationCard(passage, turnId) {
    const [before, key, after] = splitAt(passage.text, passage.highlight.start, passage.highlight.end);
    const meta = el(
      "span",
      { class: "cite-meta" },
      passage.date ? el("span", { class: "date", "data-testid": "citation-date" }, passage.date) : null,
      sectionLabel(passage),
      passage.section === "related" && passage.heading
        ? el("span", { class: "heading" }, "「", passage.heading, "」")
        : null,
    );
    return el(
      "li",
      { class: "citation", "data-testid": "citation", dataset: { rank: String(passage.rank), docId: passage.doc_id } },
      el(
        "button",
        {
          type: "button",
          class: "citation-open",
          "aria-label": `查看引用 ${passage.rank} 的原文 · Open citation ${passage.rank} in its article`,
          onclick: () => openPassage(passage, passage.rank, turnId),
        },
        el("span", { class: "cite-num", "data-testid": "citation-number" }, String(passage.rank)),
        el(
          "span",
          { class: "cite-main" },
          el("span", { class: "cite-title", "data-testid": "citation-title" }, passage.title || "（无标题 untitled）"),
          meta,
          el(
            "span",
            { class: "cite-snippet" },
            el("span", { class: "muted" }, before.trimStart()),
            el("mark", null, key),
            el("span", { class: "muted" }, after.trimEnd()),
          ),
        ),
      ),
      sourceLink(passage.url, "cite-link"),
    );
  }

  /** A link to where the article was published: only http(s) URLs, opened in a new tab. */
  function sourceLink(url, className) {
    if (!url || !/^https?:\/\//i.test(url)) return null;
    let host = url;
    try {
      host = new URL(url).host;
    } catch (_) {
      /* shown as it is */
    }
    return el(
      "a",
      { class: className, href: url, target: "_blank", rel: "noopener noreferrer", "data-testid": "citation-link", title: url },
      "原文 ",
      el("span", { class: "en" }, "source"),
      ` · ${host} ↗`,
    );
  }

  /** How a written answer came about: the model, how many sentences were removed (never which), fallback. */
  function generationNote(generation) {
    const removed = Array.isArray(generation.removed) ? generation.removed.length : 0;
    const parts = generation.fallback
      ? bilingual("语言模型的回答未能通过核对，以下为原文摘录。", "The model's answer could not be checked against the sources; showing extracts.")
      : bilingual(
          `由语言模型 ${generation.model} 撰写，每句均已与所引段落核对。`,
          `Written by ${generation.model}; every sentence checked against the passage it cites.`,
        );
    if (removed) parts.push(" ", ...bilingual(`已删去 ${removed} 句无依据的内容。`, `${removed} unsupported sentence(s) removed.`));
    return el("p", { class: "generation-note", "data-testid": "generation-note" }, ...parts);
  }

  /** A written answer while it streams: the checked sentences so far, markers linked to the passages. */
  function addStreaming(start) {
    const turnId = String(++turnCounter);
    const passages = Array.isArray(start.passages) ? start.passages : [];
    const bubble = el("div", { class: "bubble answer streaming", "data-testid": "streaming" });
    const node = el("div", { class: "turn bot", dataset: { turn: turnId } }, bubble);
    conversation().append(node);
    let text = "";
    return {
      node,
      add(piece) {
        text += piece;
        bubble.replaceChildren(answerText(text, passages, turnId), el("span", { class: "dots", "aria-hidden": "true" }));
        scrollToBottom();
      },
    };
  }

  let turnCounter = 0;

  function addAnswer(data) {
    const turnId = String(++turnCounter);
    const passages = Array.isArray(data.passages) ? data.passages : [];
    let content;
    if (!data.answerable) {
      content = el(
        "div",
        { class: "bubble abstain", "data-testid": "abstain" },
        el("p", { class: "abstain-title" }, el("span", { class: "icon", "aria-hidden": "true" }, "∅"), ...bilingual("无法回答", "No answer")),
        el(
          "p",
          { class: "reason", "data-testid": "abstain-reason" },
          ...bilingual("原因", "Reason"),
          "：",
          data.reason || "所检索的新闻中没有找到依据 · nothing in the articles supports an answer",
        ),
        el("p", { class: "muted" }, data.answer || ""),
        el("p", { class: "hint" }, ...bilingual("可以换个说法，或问文章里提到的人物、地点、数字。", "Try rephrasing, or ask about what the articles cover.")),
      );
    } else {
      content = el(
        "div",
        { class: "bubble answer", "data-testid": "answer" },
        data.answer_span
          ? el(
              "p",
              { class: "short-answer", "data-testid": "answer-span" },
              ...bilingual("答", "Answer"),
              "：",
              el("strong", null, data.answer_span.text),
            )
          : null,
        answerText(data.answer, passages, turnId),
        data.generation ? generationNote(data.generation) : null,
        passages.length
          ? el(
              "div",
              { class: "sources" },
              el("h3", null, ...bilingual("来源", "Sources"), el("span", { class: "count" }, ` · ${passages.length}`)),
              el("ol", { class: "citations" }, passages.map((p) => citationCard(p, turnId))),
            )
          : null,
      );
    }
    conversation().append(el("div", { class: "turn bot", dataset: { turn: turnId } }, content));
    // show the question and the start of its answer (a long answer is read from the top)
    const asked = conversation().querySelectorAll(".turn.user");
    if (asked.length) asked[asked.length - 1].scrollIntoView({ block: "start", behavior: "auto" });
    else scrollToBottom();
  }

  function addError(err) {
    const node = el(
      "div",
      { class: "turn bot" },
      el(
        "div",
        { class: "bubble error", "data-testid": "error", role: "alert" },
        el("p", { class: "abstain-title" }, ...bilingual("出错了", "Error"), err.status ? ` (${err.status})` : ""),
        el("p", null, err.message),
        err.status === 401
          ? el("p", { class: "hint" }, ...bilingual("请在右上角填写 API 密钥。", "Enter an API key (top right)."))
          : null,
      ),
    );
    conversation().append(node);
    scrollToBottom();
    if (err.status === 401) showKeyForm(true);
  }

  // -- filters ---------------------------------------------------------------------------------------
  /** The filters to send: null for none, false when the date range is invalid (shown to the user). */
  function currentFilters() {
    const from = $("date-from").value;
    const to = $("date-to").value;
    const error = $("filter-error");
    if (from && to && from > to) {
      error.replaceChildren("开始日期晚于结束日期 · The start date is after the end date");
      error.hidden = false;
      return false;
    }
    error.hidden = true;
    const filters = {};
    if (from) filters.date_from = from;
    if (to) filters.date_to = to;
    if (state.onlyDoc) filters.doc_ids = [state.onlyDoc.doc_id];
    return Object.keys(filters).length ? filters : null;
  }

  function setOnlyDoc(doc) {
    state.onlyDoc = doc;
    $("doc-filter").hidden = !doc;
    $("doc-filter-title").replaceChildren(doc ? doc.title || doc.doc_id : "");
  }

  async function ask(question) {
    if (state.busy) return;
    question = question.trim();
    if (!question) return;
    if (currentFilters() === false) return;
    state.busy = true;
    $("send").disabled = true;
    addUserTurn(question);
    const pending = addPending();
    const filters = currentFilters(); // checked above: valid
    const body = { question, history: state.turns.map((content) => ({ role: "user", content })) };
    let streaming = null;
    if (filters) body.filters = filters;
    try {
      const data = await askStreaming(
        body,
        (start) => {
          pending.remove();
          streaming = addStreaming(start);
        },
        (piece) => streaming && streaming.add(piece),
      );
      pending.remove();
      if (streaming) streaming.node.remove();
      state.turns.push(question);
      addAnswer(data);
    } catch (err) {
      pending.remove();
      if (streaming) streaming.node.remove();
      addError(err instanceof ApiError ? err : new ApiError(0, String(err)));
    } finally {
      state.busy = false;
      $("send").disabled = false;
      $("question").focus();
    }
  }

  function newConversation() {
    state.turns = [];
    for (const node of Array.from(conversation().querySelectorAll(".turn"))) node.remove();
    const welcome = $("welcome");
    if (welcome) welcome.hidden = false;
    closePanel();
    $("question").focus();
  }

  // -- the article panel ------------------------------------------------------------------------------
  function loadDocument(docId) {
    if (!state.documents.has(docId)) {
      const promise = api("/v1/documents/" + encodeURIComponent(docId));
      promise.catch(() => state.documents.delete(docId)); // retry on the next click
      state.documents.set(docId, promise);
    }
    return state.documents.get(docId);
  }

  function markActive(rank, turnId) {
    for (const node of document.querySelectorAll(".citation.active, .cite-ref.active")) node.classList.remove("active");
    const turn = document.querySelector(`.turn[data-turn="${CSS.escape(turnId)}"]`);
    if (!turn) return;
    for (const node of turn.querySelectorAll(`.citation[data-rank="${rank}"], .cite-ref[data-rank="${rank}"]`)) {
      node.classList.add("active");
    }
  }

  function closePanel() {
    $("article-panel").hidden = true;
    document.body.classList.remove("panel-open");
    for (const node of document.querySelectorAll(".citation.active, .cite-ref.active")) node.classList.remove("active");
  }

  async function openPassage(passage, rank, turnId) {
    const panel = $("article-panel");
    const body = $("article-body");
    const note = $("article-note");
    panel.hidden = false;
    document.body.classList.add("panel-open");
    markActive(rank, turnId);
    state.openDoc = { doc_id: passage.doc_id, title: passage.title || "" };
    $("article-cite").replaceChildren(`引用 [${rank}] · Citation [${rank}]`);
    $("article-title").replaceChildren(passage.title || "（无标题 untitled）");
    $("article-meta").replaceChildren(passage.date || "");
    note.hidden = true;
    body.replaceChildren(el("p", { class: "muted" }, "正在载入原文 Loading the article…"));
    const ticket = (state.activeCite = {});
    let doc;
    try {
      doc = await loadDocument(passage.doc_id);
    } catch (err) {
      if (state.activeCite !== ticket) return;
      body.replaceChildren(el("p", { class: "error-text", role: "alert" }, "无法载入原文 Cannot load the article: ", err.message));
      return;
    }
    if (state.activeCite !== ticket) return; // another citation was clicked meanwhile
    renderArticle(doc, passage);
  }

  function renderArticle(doc, passage) {
    const body = $("article-body");
    const note = $("article-note");
    $("article-title").replaceChildren(doc.title || passage.title || "（无标题 untitled）");
    state.openDoc = { doc_id: doc.doc_id, title: doc.title || passage.title || "" };
    const meta = [];
    if (doc.date) meta.push(el("span", { "data-testid": "article-date" }, doc.date));
    meta.push(sectionLabel(passage));
    meta.push(el("code", { class: "doc-ref" }, `${doc.doc_id}:${passage.start}-${passage.end}`));
    if (doc.url && /^https?:\/\//i.test(doc.url)) {
      meta.push(el("a", { href: doc.url, target: "_blank", rel: "noopener noreferrer", "data-testid": "article-link" }, "原文链接 source ↗"));
    }
    $("article-meta").replaceChildren(...meta.flatMap((m, i) => (i ? [" · ", m] : [m])));

    let start = passage.start;
    let end = passage.end;
    const text = String(doc.text || "");
    if (codePointSlice(text, start, end) !== passage.text) {
      // The article changed since the answer: find the passage by its text instead.
      const at = text.indexOf(passage.text);
      if (at >= 0) {
        start = Array.from(text.slice(0, at)).length;
        end = start + Array.from(passage.text).length;
        note.replaceChildren("原文的位置有变动，已按文字找到这段引用。 · The article changed; the passage was found by its text.");
      } else {
        start = end = -1;
        note.replaceChildren("原文已更改，找不到这段引用。 · The article changed; the cited passage is no longer in it.");
      }
      note.hidden = false;
    }
    if (start < 0) {
      body.replaceChildren(el("div", { class: "article-text" }, text));
      body.scrollTop = 0;
      return;
    }
    const [before, cited, after] = splitAt(text, start, end);
    const [keyBefore, key, keyAfter] = splitAt(cited, passage.highlight.start, passage.highlight.end);
    const mark = el(
      "mark",
      { class: "passage", id: "cited-passage", "data-testid": "highlight" },
      keyBefore,
      el("strong", { class: "key" }, key),
      keyAfter,
    );
    body.replaceChildren(el("div", { class: "article-text" }, before, mark, after));
    mark.scrollIntoView({ block: "center", behavior: "auto" });
  }

  // -- the API key ------------------------------------------------------------------------------------
  function showKeyForm(show) {
    const form = $("key-form");
    form.hidden = !show;
    $("key-toggle").setAttribute("aria-expanded", String(show));
    if (show) {
      $("key-input").value = apiKey();
      $("key-input").focus();
    }
  }

  function saveKey(value) {
    try {
      if (value) localStorage.setItem(KEY_STORAGE, value);
      else localStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage disabled: the key is not kept */
    }
    state.documents.clear();
    $("key-toggle").classList.toggle("has-key", Boolean(value));
  }

  async function showStatus() {
    try {
      const ready = await api("/readyz");
      if (ready && typeof ready.articles === "number") {
        $("status").replaceChildren(
          `已收录 ${ready.articles} 篇文章、${ready.passages} 个段落 · ${ready.articles} articles, ${ready.passages} passages`,
        );
      }
    } catch (_) {
      /* the page works without it */
    }
  }

  // -- wiring -----------------------------------------------------------------------------------------
  function init() {
    const form = $("ask-form");
    const input = $("question");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const question = input.value;
      if (!question.trim() || state.busy) return;
      if (currentFilters() === false) return; // the question stays in the box while the dates are fixed
      input.value = "";
      ask(question);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    for (const button of document.querySelectorAll(".example")) {
      button.addEventListener("click", () => {
        if (!state.busy) ask(button.textContent || "");
      });
    }
    $("new-chat").addEventListener("click", newConversation);
    $("article-only").addEventListener("click", () => {
      if (state.openDoc) setOnlyDoc(state.openDoc);
      $("question").focus();
    });
    $("doc-filter-clear").addEventListener("click", () => setOnlyDoc(null));
    for (const id of ["date-from", "date-to"]) $(id).addEventListener("change", () => currentFilters());
    $("article-close").addEventListener("click", closePanel);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("article-panel").hidden) closePanel();
    });
    $("key-toggle").addEventListener("click", () => showKeyForm($("key-form").hidden));
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      saveKey($("key-input").value.trim());
      showKeyForm(false);
      showStatus();
    });
    $("key-clear").addEventListener("click", () => {
      $("key-input").value = "";
      saveKey("");
      showKeyForm(false);
    });
    $("key-toggle").classList.toggle("has-key", Boolean(apiKey()));
    showStatus();
    input.focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
