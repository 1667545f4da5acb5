// The playground's script, served as a file under a Content-Security-Policy without inline script.
// Every value from the API (labels, captions, prompts, messages) reaches the page as text
// (textContent, DOM nodes, Option), never as HTML.
"use strict";
const $ = (id) => document.getElementById(id);
const headers = () => {
  const h = {"content-type": "application/json"};
  if ($("key").value) h["authorization"] = "Bearer " + $("key").value;
  return h;
};
const TERMINAL = ["succeeded", "failed", "canceled"];

function setStatus(text, notice = false) {
  $("status").textContent = text;
  $("status").classList.toggle("notice", notice);
}

// only http(s) or same-origin paths become an image source
function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return ["http:", "https:"].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

function figure(url, lines) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.alt = "";
  const src = safeUrl(url);
  if (src) img.src = src;
  const caption = document.createElement("figcaption");
  lines.forEach((line, i) => {
    if (i) caption.append(document.createElement("br"));
    caption.append(document.createTextNode(line));
  });
  fig.append(img, caption);
  return fig;
}

function render(job) {
  $("json").textContent = JSON.stringify(job, null, 2);
  setStatus(`Job ${job.id}: ${job.status}` + (job.error ? ` (${job.error.message})` : ""));
  $("bar").value = job.progress ? job.progress.fraction : 0;
  $("refs").replaceChildren(...(job.references || []).map((r) => figure(r.image_url, [
    String(r.label || r.caption || String(r.id).slice(0, 8)),
    `score ${typeof r.score === "number" ? r.score.toFixed(3) : "–"}`,
  ])));
  $("outs").replaceChildren(...(job.outputs || []).map((o) => figure(o.url, [`seed ${o.seed}`])));
}

async function getJob(id) {
  const r = await fetch(`/v1/generations/${encodeURIComponent(id)}`, {headers: headers()});
  return [r, await r.json()];
}

async function follow(job) {
  render(job);
  while (!TERMINAL.includes(job.status)) {
    await new Promise((res) => setTimeout(res, 300));
    const [r, next] = await getJob(job.id);
    if (!r.ok) { setStatus(`Error ${r.status}: ${next.error?.message}`); return; }
    job = next;
    render(job);
  }
}

async function loadModels() {
  const r = await fetch("/v1/models", {headers: headers()});
  if (!r.ok) return;
  for (const m of (await r.json()).data) {
    $("model").add(new Option(`${m.id} (${m.family})`, m.id, m.default, m.default));
  }
}

$("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = {prompt: $("prompt").value, model: $("model").value || undefined, n: +$("n").value,
                seed: +$("seed").value, retrieval: {top_k: +$("topk").value}};
  setStatus("Submitting…");
  const r = await fetch("/v1/generations", {method: "POST", headers: headers(), body: JSON.stringify(body)});
  const job = await r.json();
  if (!r.ok) { setStatus(`Error ${r.status}: ${job.error?.message}`); $("json").textContent = JSON.stringify(job, null, 2); return; }
  history.replaceState(null, "", `?job=${encodeURIComponent(job.id)}`);
  follow(job);
});

// Shareable links: ?job=ID shows a job; ?prompt=...&seed=...&topk=...&n=...&model=... fills the form.
// A link never submits by itself (run=1 only asks for the click): a job costs the visitor's quota.
const params = new URLSearchParams(location.search);
for (const id of ["prompt", "seed", "topk", "n"]) if (params.has(id)) $(id).value = params.get(id);
loadModels().then(() => {
  if (params.has("model")) $("model").value = params.get("model");
});
if (params.get("run") === "1") {
  setStatus("This link filled in the form: check it, then press Generate to run it.", true);
  $("go").focus();
}
if (params.has("job")) {
  getJob(params.get("job")).then(([r, job]) => {
    if (!r.ok) { setStatus(job.error?.message || `Error ${r.status}`); return; }
    $("prompt").value = job.prompt;
    $("seed").value = job.seeds[0];
    $("n").value = job.seeds.length;
    $("topk").value = job.references.length;
    follow(job);
  });
}
