// The ret2vqa page: pick or drop a photo, ask, show the answer, its sources and the timings.
// Plain DOM code, no libraries, nothing loaded from elsewhere (the page works offline).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("ask"), fileInput = $("image"), drop = $("drop"), preview = $("preview");
  const status = $("status"), result = $("result"), submit = $("submit");
  const keyInput = $("apikey"), keyLabel = $("apikey-label");
  let file = null, previewUrl = null;

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function useFile(f) {
    if (!f) return;
    file = f;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(f);
    preview.src = previewUrl;
    preview.alt = "the photo to ask about: " + f.name;
    preview.hidden = false;
    setStatus("Photo: " + f.name + " (" + Math.round(f.size / 1024) + " KB)");
  }

  fileInput.addEventListener("change", () => useFile(fileInput.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
  });
  // Keyboard: the file input is focusable; Enter or Space opens the picker.
  fileInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });

  function headers() {
    const key = keyInput.value || sessionStorage.getItem("ret2vqa-key") || "";
    return key ? { "Authorization": "Bearer " + key } : {};
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function passageImage(img, url) {
    try {
      const r = await fetch(url, { headers: headers() });
      if (!r.ok) { img.remove(); return; }
      img.src = URL.createObjectURL(await r.blob());
    } catch (e) { img.remove(); }
  }

  function render(data) {
    $("answer").textContent = data.answer || "(empty answer)";
    const list = $("passages");
    list.replaceChildren();
    (data.passages || []).forEach((p) => {
      const li = el("li", { "class": "source" });
      const box = el("div", { "class": "passage" });
      if (p.image_url) {
        const img = el("img", { alt: "image of " + (p.title || p.id), loading: "lazy" });
        box.appendChild(img);
        passageImage(img, p.image_url);
      }
      const body = el("div");
      const title = p.url && /^https?:\/\//.test(p.url) ? el("a", { href: p.url, rel: "noopener noreferrer", target: "_blank" }, p.title || p.id)
                                                       : el("strong", {}, p.title || p.id);
      body.appendChild(title);
      const meta = el("div", { "class": "meta" });
      meta.appendChild(el("span", { "class": "score" }, "score " + (p.score === null ? "-" : p.score.toFixed(4))));
      meta.appendChild(document.createTextNode(" · " + p.id));
      body.appendChild(meta);
      body.appendChild(el("p", {}, p.snippet || ""));
      box.appendChild(body);
      li.appendChild(box);
      list.appendChild(li);
    });
    if (!list.children.length) list.appendChild(el("li", {}, "no sources (zero-shot answer)"));
    const tbody = $("timings").tBodies[0];
    tbody.replaceChildren();
    const rows = Object.entries(data.timings_ms || {});
    if (data.server) rows.push(["queued_ms", data.server.queue_ms], ["batch size", data.server.batch_size]);
    rows.forEach(([k, v]) => {
      const tr = el("tr");
      tr.appendChild(el("td", {}, k.replace(/_ms$/, "")));
      tr.appendChild(el("td", {}, k.endsWith("_ms") ? v.toFixed(1) + " ms" : String(v)));
      tbody.appendChild(tr);
    });
    result.hidden = false;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = $("question").value.trim();
    if (!question && !file) { setStatus("Pick a photo or type a question first.", true); return; }
    const body = new FormData();
    if (file) body.append("image", file, file.name);
    if (question) body.append("question", question);
    body.append("k", $("k").value);
    submit.disabled = true;
    setStatus("Thinking…");
    const started = performance.now();
    try {
      const r = await fetch("/v1/answer", { method: "POST", body: body, headers: headers() });
      const data = await r.json().catch(() => ({}));
      if (r.status === 401) {
        keyInput.hidden = false; keyLabel.hidden = false; keyInput.focus();
        setStatus("This server needs an API key: enter it and ask again.", true);
        return;
      }
      if (!r.ok) {
        setStatus((data.error && data.error.message) || ("error " + r.status), true);
        return;
      }
      if (keyInput.value) sessionStorage.setItem("ret2vqa-key", keyInput.value);
      render(data);
      setStatus("Answered in " + Math.round(performance.now() - started) + " ms.");
      $("answer").focus({ preventScroll: false });
    } catch (err) {
      setStatus("The server cannot be reached: " + err, true);
    } finally {
      submit.disabled = false;
    }
  });
  $("answer").setAttribute("tabindex", "-1");

  // Which models answer (and a clear label when they are the tiny random test models).
  fetch("/v1/info", { headers: headers() }).then((r) => (r.ok ? r.json() : null)).then((info) => {
    if (!info) return;
    $("models").textContent = "Models: " + info.encoder + " → " + info.generator + " · " + info.collection;
    if (info.tiny) {
      const note = el("p", { "class": "tiny-note", role: "note" },
        "Tiny random models (for tests and demos): retrieval and answers are meaningless.");
      document.querySelector("header").appendChild(note);
    }
    const k = $("k");
    if (![...k.options].some((o) => o.value === String(info.k))) k.add(new Option(String(info.k), String(info.k)));
    k.value = String(info.k);
  }).catch(() => {});
})();
