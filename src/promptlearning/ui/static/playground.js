// The playground: render a template, score label words (raw and calibrated), shade the prompt's
// tokens by log-probability (the /v1/completions echo + logprobs path) and generate.
"use strict";

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const response = await window.uiFetch(path, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || data.detail || `HTTP ${response.status}`);
  return data;
}

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error ? error.message : "";
}

function target() {
  const [kind, ...rest] = $("target").value.split(":");
  return { kind, name: rest.join(":") };
}

function labelWords() {
  const words = {};
  for (const line of $("words").value.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`label words: write "label: word, word", not ${JSON.stringify(line)}`);
    const label = line.slice(0, at).trim();
    // the word follows the prompt after a space (chat mode strips it: the answer is its own message)
    words[label] = line.slice(at + 1).split(",").map((w) => w.trim()).filter(Boolean).map((w) => " " + w);
    if (!words[label].length) throw new Error(`label ${label} has no words`);
  }
  if (Object.keys(words).length < 2) throw new Error("give at least two labels, one per line");
  return words;
}

function inputFields() {
  const text = $("input").value;
  if (text.trim().startsWith("{")) {
    const fields = JSON.parse(text);
    if (typeof fields !== "object" || Array.isArray(fields)) throw new Error("the input JSON must be an object");
    return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, String(v)]));
  }
  return { text };
}

function templateBody() {
  return { template: $("template").value, mode: $("mode").value, instruction: $("instruction").value };
}

function softmax(scores) {
  const values = Object.values(scores), top = Math.max(...values);
  const total = values.reduce((sum, v) => sum + Math.exp(v - top), 0);
  return Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, Math.exp(v - top) / total]));
}

function showProbabilities(raw, calibrated) {
  const body = $("probabilities").tBodies[0];
  body.replaceChildren();
  for (const label of Object.keys(raw)) {
    const row = body.insertRow();
    row.insertCell().textContent = label;
    for (const p of [raw[label], calibrated ? calibrated[label] : null]) {
      const cell = row.insertCell();
      if (p === null || p === undefined) { cell.textContent = "-"; continue; }
      const meter = document.createElement("meter");
      meter.min = 0; meter.max = 1; meter.value = p;
      cell.append(meter, " " + p.toFixed(3));
    }
  }
}

const HEAT_LEVELS = [-1, -2.5, -4, -5.5, -7, -10];  // log p thresholds of the seven shades

function showHeatmap(logprobs) {
  const map = $("heatmap");
  map.replaceChildren();
  logprobs.tokens.forEach((token, i) => {
    const value = logprobs.token_logprobs[i];
    const span = document.createElement("span");
    span.textContent = token;
    span.tabIndex = 0;
    const bucket = value === null ? 0 : HEAT_LEVELS.filter((level) => value < level).length;
    span.className = "lp" + bucket;
    span.title = value === null ? "first token: no log-probability" : `log p = ${value.toFixed(2)}`;
    span.setAttribute("aria-label", `${token} ${span.title}`);
    map.append(span);
  });
}

async function renderPrompt() {
  const { kind, name } = target();
  if (kind !== "model") {
    $("prompt").textContent = "(a saved program renders its own prompt)";
    return null;
  }
  const rendered = await api("/ui/render", { ...templateBody(), model: name, input: inputFields() });
  $("prompt").textContent = rendered.prompt;
  return rendered.prompt;
}

async function score(event) {
  event.preventDefault();
  showError(null);
  try {
    const { kind, name } = target();
    if (kind === "program") {
      const result = await api(`/v1/programs/${encodeURIComponent(name)}/predict`, { inputs: [inputFields()] });
      showProbabilities(result.predictions[0].probabilities || {}, null);
      await renderPrompt();
      return;
    }
    const prompt = await renderPrompt();
    const calibration = $("calibration").value;
    const result = await api("/v1/classify", {
      model: name, template: { input: $("template").value, mode: $("mode").value, instruction: $("instruction").value },
      verbalizer: labelWords(), inputs: [inputFields()], calibration,
    });
    const prediction = result.predictions[0];
    showProbabilities(softmax(prediction.label_scores), calibration === "none" ? null : prediction.probabilities);
    const echo = await api("/v1/completions", { model: name, prompt, max_tokens: 0, echo: true, logprobs: 0 });
    showHeatmap(echo.choices[0].logprobs);
  } catch (error) { showError(error); }
}

async function generate() {
  showError(null);
  try {
    const { kind, name } = target();
    if (kind !== "model") throw new Error("generation needs a model, not a program");
    const prompt = await renderPrompt();
    const result = await api("/v1/completions", {
      model: name, prompt, max_tokens: Number($("max_tokens").value), temperature: Number($("temperature").value),
      top_p: Number($("top_p").value),
    });
    $("generation").textContent = result.choices[0].text;
  } catch (error) { showError(error); }
}

async function exportTask() {
  showError(null);
  try {
    const { kind, name } = target();
    const response = await window.uiFetch("/ui/export", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...templateBody(), model: kind === "model" ? name : null, words: labelWords(),
                             calibration: $("calibration").value }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(JSON.parse(text).error.message);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
    link.download = "playground-task.yaml";
    link.click();
    $("generation").textContent = text;
  } catch (error) { showError(error); }
}

async function loadTargets() {
  const select = $("target");
  try {
    const [models, programs] = await Promise.all([api("/v1/models"), api("/v1/programs")]);
    select.replaceChildren();
    for (const model of models.data) select.add(new Option(`model: ${model.id}`, `model:${model.id}`));
    for (const program of programs.data) select.add(new Option(`program: ${program.id}`, `program:${program.id}`));
  } catch (error) {
    select.replaceChildren(new Option("no model yet: is it still loading?", ""));
    showError(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("playground").addEventListener("submit", score);
  $("generate").addEventListener("click", generate);
  $("export").addEventListener("click", exportTask);
  loadTargets();
});
