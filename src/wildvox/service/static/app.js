// wildvox web page: plain JS, no build step. Every string from the server or the user is
// shown with textContent, never as HTML.
"use strict";

const TARGET_RATE = 16000;  // recordings are converted to 16 kHz mono 16-bit WAV here
const recorded = {};        // slot name -> File made from a microphone recording
let health = null;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function table(headers, rows) {
  const t = el("table");
  const head = t.createTHead().insertRow();
  for (const h of headers) head.appendChild(el("th", h));
  const body = t.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const cell of row) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
    }
  }
  return t;
}

function show(target, ...nodes) { $(target).replaceChildren(...nodes); }

function fmt(x, digits) { return Number(x).toFixed(digits); }

async function call(method, path, form) {
  const headers = {};
  if (health && health.auth) headers["X-API-Key"] = $("api-key").value.trim();
  const response = await fetch(path, { method, headers, body: form });
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  if (!response.ok) {
    const err = payload && payload.error ? payload.error : { message: response.statusText };
    const where = err.field ? ` (${err.field}${err.filename ? ": " + err.filename : ""})` : "";
    throw new Error(`${response.status} ${err.code || "error"}${where}: ${err.message}`);
  }
  return payload;
}

function fail(target, error) { show(target, el("p", error.message, "error")); }

// ---------------------------------------------------------------- recording -> WAV
function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

async function toWav(blob) {
  // Whatever the browser recorded (WebM/Opus, Ogg, MP4): decode, mix to mono, resample.
  const context = new AudioContext();
  const decoded = await context.decodeAudioData(await blob.arrayBuffer());
  await context.close();
  const frames = Math.max(1, Math.ceil(decoded.duration * TARGET_RATE));
  const offline = new OfflineAudioContext(1, frames, TARGET_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const mono = await offline.startRendering();
  return { wav: encodeWav(mono.getChannelData(0), TARGET_RATE), seconds: decoded.duration };
}

function addRecorder(slot) {
  const name = slot.dataset.slot;
  const button = el("button", "● Record");
  button.type = "button";
  const state = el("span", "", "rec-state");
  const preview = el("audio");
  preview.controls = true;
  preview.hidden = true;
  slot.append(" or ", button, state, preview);
  const input = slot.querySelector("input[type=file]");
  input.addEventListener("change", () => { delete recorded[name]; state.textContent = ""; preview.hidden = true; });
  let recorder = null;
  button.addEventListener("click", async () => {
    if (recorder && recorder.state === "recording") { recorder.stop(); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      state.textContent = `microphone unavailable: ${e.message}`;
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      button.textContent = "● Record";
      button.classList.remove("recording");
      try {
        const { wav, seconds } = await toWav(new Blob(chunks, { type: recorder.mimeType }));
        recorded[name] = new File([wav], `${name}-recording.wav`, { type: "audio/wav" });
        input.value = "";
        state.textContent = `recorded ${fmt(seconds, 1)} s (sent as 16 kHz WAV)`;
        preview.src = URL.createObjectURL(wav);
        preview.hidden = false;
      } catch (e) {
        state.textContent = `could not convert the recording: ${e.message}`;
      }
    };
    recorder.start();
    button.textContent = "■ Stop";
    button.classList.add("recording");
    state.textContent = "recording…";
  });
}

function chosen(slotName, inputId) {
  // The recording of a slot when there is one, else the files picked in its input.
  if (recorded[slotName]) return [recorded[slotName]];
  return Array.from($(inputId).files);
}

// ---------------------------------------------------------------- answers
function decisionLine(accept, reliable, threshold, point, text) {
  const line = el("p", "", "decision");
  line.append(el("span", text, accept ? "accept" : "reject"));
  line.append(el("span", ` at ${point} (LLR threshold ${fmt(threshold, 2)})`));
  if (!reliable) line.append(el("span", " (unreliable)", "note"));
  return line;
}

async function doVerify() {
  const a = chosen("verify-a", "verify-a"), b = chosen("verify-b", "verify-b");
  if (!a.length || !b.length) { fail("verify-result", new Error("choose or record both recordings")); return; }
  const form = new FormData();
  form.append("a", a[0]);
  form.append("b", b[0]);
  form.append("operating_point", $("operating-point").value);
  show("verify-result", el("p", "verifying…"));
  try {
    const v = await call("POST", "/v1/verify", form);
    const nodes = [decisionLine(v.accept, v.reliable, v.threshold, v.operating_point,
                                v.accept ? "Same speaker" : "Different speakers"),
      table(["score", "cosine", "LLR", "duration A / B (s)", "speech A / B (s)"],
            [[fmt(v.score, 3), fmt(v.cosine, 3), fmt(v.llr, 2),
              `${fmt(v.durations[0], 1)} / ${fmt(v.durations[1], 1)}`,
              `${fmt(v.speech[0], 1)} / ${fmt(v.speech[1], 1)}`]])];
    if (v.note) nodes.push(el("p", v.note, "note"));
    show("verify-result", ...nodes);
  } catch (e) { fail("verify-result", e); }
}

async function doEnroll() {
  const files = chosen("enroll", "enroll-files");
  const name = $("enroll-name").value;
  if (!name.trim() || !files.length) { fail("enroll-result", new Error("give a name and at least one recording")); return; }
  const form = new FormData();
  form.append("name", name);
  for (const f of files) form.append("files", f);
  show("enroll-result", el("p", "enrolling…"));
  try {
    const r = await call("POST", "/v1/enroll", form);
    $("enroll-files").value = "";  // the next speaker starts from an empty choice
    delete recorded["enroll"];
    show("enroll-result", el("p", `Enrolled ${r.name}: ${r.num_utterances} recording(s), ` +
                                  `${fmt(r.total_duration, 1)} s in all.`));
    await refreshSpeakers();
  } catch (e) { fail("enroll-result", e); }
}

async function doIdentify() {
  const files = chosen("identify", "identify-file");
  if (!files.length) { fail("identify-result", new Error("choose or record a recording")); return; }
  const form = new FormData();
  form.append("file", files[0]);
  form.append("top_k", $("identify-top-k").value);
  form.append("operating_point", $("operating-point").value);
  show("identify-result", el("p", "identifying…"));
  try {
    const r = await call("POST", "/v1/identify", form);
    const nodes = [decisionLine(r.speaker !== null, r.reliable, r.threshold, r.operating_point,
                                r.speaker !== null ? `It is ${r.speaker}` : "Unknown speaker"),
      table(["rank", "speaker", "score", "cosine", "LLR"],
            r.candidates.map((c, i) => [i + 1, c.name, fmt(c.score, 3), fmt(c.cosine, 3), fmt(c.llr, 2)]))];
    if (r.note) nodes.push(el("p", r.note, "note"));
    show("identify-result", ...nodes);
  } catch (e) { fail("identify-result", e); }
}

const COLOURS = ["#2f5fd0", "#d0742f", "#2fa05f", "#a02fd0", "#d02f5f", "#2fb8d0", "#8a8a2f"];

function timeline(d) {
  // One lane per speaker; each turn a bar placed by its start and end (seconds).
  const box = el("div", "", "timeline");
  const total = Math.max(d.duration, 1e-6);
  d.speakers.forEach((s, i) => {
    const lane = el("div", "", "lane");
    lane.append(el("span", s.label, "lane-name"));
    const track = el("div", "", "lane-track");
    for (const t of d.turns.filter((t) => t.speaker === s.label)) {
      const bar = el("div", "", "turn");
      bar.style.left = `${(100 * t.start) / total}%`;
      bar.style.width = `${Math.max(0.2, (100 * (t.end - t.start)) / total)}%`;
      bar.style.background = COLOURS[i % COLOURS.length];
      bar.title = `${s.label}: ${fmt(t.start, 2)}-${fmt(t.end, 2)} s`;
      track.append(bar);
    }
    lane.append(track);
    box.append(lane);
  });
  const axis = el("div", "", "axis");
  for (let k = 0; k <= 4; k++) axis.append(el("span", `${fmt((total * k) / 4, 1)} s`));
  box.append(axis);
  return box;
}

async function doDiarize() {
  const files = chosen("diarize", "diarize-file");
  if (!files.length) { fail("diarize-result", new Error("choose or record a recording")); return; }
  const form = new FormData();
  form.append("file", files[0]);
  const num = $("diarize-num").value.trim();
  if (num) form.append("num_speakers", num);
  form.append("operating_point", $("operating-point").value);
  show("diarize-result", el("p", "diarizing…"));
  try {
    const d = await call("POST", "/v1/diarize", form);
    const head = el("p", `${d.num_speakers} speaker(s) in ${fmt(d.duration, 1)} s; ` +
      (d.identification_threshold === null ? "nobody enrolled to name them"
        : `named at ${d.operating_point} (LLR threshold ${fmt(d.identification_threshold, 2)})`));
    const rows = d.speakers.map((s) => [s.label, s.enrolled ? "yes" : "no", fmt(s.speech, 1),
      s.best === null ? "" : s.best, s.llr === null ? "" : fmt(s.llr, 2)]);
    show("diarize-result", head, timeline(d),
         table(["speaker", "enrolled", "speech (s)", "closest enrolled", "LLR"], rows));
  } catch (e) { fail("diarize-result", e); }
}

async function refreshSpeakers() {
  try {
    const r = await call("GET", "/v1/speakers");
    const rows = r.speakers.map((s) => {
      const remove = el("button", "Remove");
      remove.addEventListener("click", async () => {
        try {
          await call("DELETE", `/v1/speakers/${encodeURIComponent(s.name)}`);
          await refreshSpeakers();
        } catch (e) { fail("speakers-result", e); }
      });
      return [s.name, s.num_utterances, fmt(s.total_duration, 1), remove];
    });
    show("speakers-result", rows.length ? table(["name", "recordings", "seconds", ""], rows)
                                        : el("p", "nobody enrolled yet"));
  } catch (e) { fail("speakers-result", e); }
}

async function start() {
  document.querySelectorAll(".slot").forEach(addRecorder);
  $("verify-submit").addEventListener("click", doVerify);
  $("enroll-submit").addEventListener("click", doEnroll);
  $("identify-submit").addEventListener("click", doIdentify);
  $("speakers-refresh").addEventListener("click", refreshSpeakers);
  $("diarize-submit").addEventListener("click", doDiarize);
  const key = $("api-key");
  key.value = sessionStorage.getItem("wildvox-key") || "";
  key.addEventListener("change", () => { sessionStorage.setItem("wildvox-key", key.value); refreshSpeakers(); });
  try {
    health = await (await fetch("/healthz")).json();
  } catch (e) {
    $("model-info").textContent = `server unreachable: ${e.message}`;
    return;
  }
  $("key-label").hidden = !health.auth;
  for (const p of health.operating_points) $("operating-point").append(el("option", p));
  $("model-info").textContent = `model ${health.model_id} · ${health.scoring} scoring · ` +
    `up to ${health.max_seconds} s per recording`;
  document.body.dataset.ready = "true";
  await refreshSpeakers();
}

start();
