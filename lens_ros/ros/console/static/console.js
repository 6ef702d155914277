// lens console: frames by polling JPEGs, everything else by Server-Sent Events (/events).
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
const $ = (id) => document.getElementById(id);
const ERRORS = ["BAD_IMAGE", "BAD_COMMAND", "MODEL_ERROR", "TIMEOUT", "DROPPED", "NO_IMAGE", "NOT_READY"];
let activeGoal = null;

async function post(url, body, type) {
  const res = await fetch(withToken(url), {method: "POST", body: body,
    headers: {"Content-Type": type || "application/json"}});
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

// -- frames: fetch the next JPEG once the last one is shown ----------------------------------
function poll(img, src, info) {
  let url = null, shown = 0;
  const next = async () => {
    let wait = 150;
    try {
      const res = await fetch(withToken(`/frame.jpg?src=${src}&n=${Date.now()}`));
      if (res.status === 200) {
        const blob = await res.blob();
        if (url) URL.revokeObjectURL(url);
        url = URL.createObjectURL(blob);
        img.src = url;
        info.textContent = `(${++shown})`;
      } else { wait = 500; }
    } catch (e) { wait = 1000; }
    setTimeout(next, wait);
  };
  next();
}

// -- results and reasoning ------------------------------------------------------------------
function statusClass(s) { return ERRORS.includes(s) ? "status-err" : "status-" + s; }

function addResult(r) {
  const tr = document.createElement("tr");
  const t = new Date((r.received || Date.now() / 1000) * 1000).toLocaleTimeString();
  const cells = [t, r.command, r.status, r.box ? r.box.map((v) => Math.round(v)).join(", ") : "",
                 r.score.toFixed(2), r.total_ms];
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  tr.children[2].className = statusClass(r.status);
  tr.title = r.error || r.answer;
  const body = $("results").tBodies[0];
  body.insertBefore(tr, body.firstChild);
  while (body.rows.length > 20) body.deleteRow(-1);
}

function showDiagnostics(d) {
  if (d && d.lines) $("diagnostics").textContent = d.lines.join("\n");
}

function connect() {
  const es = new EventSource(withToken("/events"));
  es.onopen = () => { $("link").textContent = "connected"; $("link").classList.remove("off"); };
  es.onerror = () => { $("link").textContent = "reconnecting…"; $("link").classList.add("off"); };
  es.addEventListener("state", (e) => {
    const s = JSON.parse(e.data);
    $("results").tBodies[0].replaceChildren();
    s.results.slice().reverse().forEach(addResult);
    showDiagnostics(s.diagnostics);
    setServer(s.action_server);
  });
  es.addEventListener("result", (e) => addResult(JSON.parse(e.data)));
  es.addEventListener("diagnostics", (e) => {
    const d = JSON.parse(e.data);
    showDiagnostics(d);
    setServer(d.action_server);
  });
  es.addEventListener("feedback", (e) => {
    const f = JSON.parse(e.data);
    if (f.goal !== activeGoal) return;
    $("stage").textContent = f.stage;
    if (f.text) $("reasoning").textContent = f.text;
  });
  es.addEventListener("goal", (e) => {
    const g = JSON.parse(e.data);
    // a fast answer can arrive before the POST that sent the goal has returned its id
    endedGoals.set(g.goal, g);
    if (endedGoals.size > 50) endedGoals.delete(endedGoals.keys().next().value);
    if (g.goal === activeGoal) showGoalEnd(g);
  });
}

const endedGoals = new Map();

function showGoalEnd(g) {
  $("stage").textContent = g.state + (g.result ? " · " + g.result.status : "");
  if (g.result && g.result.reasoning) $("reasoning").textContent = g.result.reasoning;
  if (g.result && g.result.error) $("reasoning").textContent += "\n" + g.result.error;
  activeGoal = null;
  $("cancel").disabled = true;
}

function setServer(ready) {
  $("server").textContent = ready ? "segment server ready" : "no segment server";
  $("server").classList.toggle("off", !ready);
}

$("ask").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const command = $("command").value.trim();
  if (!command) return;
  $("reasoning").textContent = "";
  $("stage").textContent = "sending";
  try {
    const r = await post("/api/goal", JSON.stringify({command, reasoning: +$("mode").value}));
    activeGoal = r.goal;
    $("cancel").disabled = false;
    setServer(true);
    if (endedGoals.has(r.goal)) showGoalEnd(endedGoals.get(r.goal));
  } catch (e) {
    $("stage").textContent = "not sent";
    $("reasoning").textContent = e.message;
  }
});

$("cancel").addEventListener("click", () => {
  if (activeGoal) post("/api/cancel", JSON.stringify({goal: activeGoal})).catch(() => {});
});

// -- push-to-talk: microphone -> 16 kHz int16 PCM -> /api/audio ------------------------------
const RATE = 16000;
let mic = null;

async function startTalk() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $("talk-info").textContent = "no microphone access: browsers allow it only on https or localhost";
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: true, noiseSuppression: true}});
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const source = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(4096, 1, 1);
    const parts = [];
    proc.onaudioprocess = (e) => parts.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(proc);
    proc.connect(ctx.destination);
    mic = {stream, ctx, source, proc, parts};
    $("talk").classList.add("on");
    $("talk-info").textContent = "listening…";
  } catch (e) {
    $("talk-info").textContent = "microphone refused: " + e.message;
  }
}

function toPcm16(parts, inRate) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const p of parts) { all.set(p, o); o += p.length; }
  const ratio = inRate / RATE, out = new Int16Array(Math.floor(n / ratio));
  for (let i = 0; i < out.length; i++) {  // box filter over the input samples of each output one
    const a = Math.floor(i * ratio), b = Math.max(a + 1, Math.floor((i + 1) * ratio));
    let s = 0;
    for (let j = a; j < b && j < n; j++) s += all[j];
    const v = Math.max(-1, Math.min(1, s / (b - a)));
    out[i] = v < 0 ? v * 32768 : v * 32767;
  }
  return out;
}

async function stopTalk() {
  if (!mic) return;
  const m = mic; mic = null;
  $("talk").classList.remove("on");
  m.proc.disconnect(); m.source.disconnect();
  m.stream.getTracks().forEach((t) => t.stop());
  const pcm = toPcm16(m.parts, m.ctx.sampleRate);
  m.ctx.close();
  if (pcm.length < RATE / 5) { $("talk-info").textContent = "too short"; return; }
  try {
    const r = await post(`/api/audio?rate=${RATE}`, pcm.buffer, "application/octet-stream");
    $("talk-info").textContent = `sent ${r.seconds} s to the speech node`;
  } catch (e) { $("talk-info").textContent = "not sent: " + e.message; }
}

$("talk").addEventListener("pointerdown", (e) => { e.preventDefault(); startTalk(); });
for (const ev of ["pointerup", "pointerleave", "pointercancel"]) $("talk").addEventListener(ev, stopTalk);

poll($("camera"), "image", $("camera-info"));
poll($("overlay"), "debug", $("overlay-info"));
connect();
