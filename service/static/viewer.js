// LoopReg web viewer: upload a scan, follow the job, show the scan with the fitted body, the per-part
// distances and the downloads. Plain ES module; three.js is vendored in ./vendor/three (web/README.md).
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { OBJLoader } from "three/addons/loaders/OBJLoader.js";
import { PLYLoader } from "three/addons/loaders/PLYLoader.js";
import { STLLoader } from "three/addons/loaders/STLLoader.js";

// A copy of PART_NAMES / PART_COLORS in loopreg/body/parts.py (tests/service/test_viewer.py checks it).
// BEGIN PART_COLORS
const PART_COLORS = {
  head: [230, 200, 160],
  torso: [120, 120, 200],
  left_upper_arm: [230, 80, 80],
  right_upper_arm: [80, 200, 80],
  left_mid_arm: [250, 150, 60],
  right_mid_arm: [60, 180, 180],
  left_forearm: [200, 60, 160],
  right_forearm: [140, 200, 60],
  left_upper_leg: [80, 80, 230],
  right_upper_leg: [230, 230, 70],
  left_leg: [160, 90, 200],
  right_leg: [90, 160, 230],
  left_foot: [200, 120, 120],
  right_foot: [120, 200, 160],
};
// END PART_COLORS

const KEY_STORE = "loopreg.apiKey";
const POLL_MS = 600;
const PREVIEW_MAX_BYTES = 200 * 1024 * 1024;
const SCAN_GREY = 0xb9bec8;
const BODY_BLUE = 0x3f78d8;
const OFFSETS_GOLD = 0xd99a2b;
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- API helpers

class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

/** The problem+json `detail` of an error answer (RFC 9457), else the HTTP status in words. */
function problemMessage(text, status, statusText) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.detail === "string" && body.detail) return body.detail;
  } catch {
    /* not JSON */
  }
  if (!status) return "the API could not be reached; check that the server is running";
  return `the server answered HTTP ${status} ${statusText || ""}`.trim();
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function api(path, init = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  } catch (err) {
    throw new ApiError(`the API could not be reached (${err.message})`);
  }
  if (!resp.ok) {
    throw new ApiError(problemMessage(await resp.text(), resp.status, resp.statusText), resp.status);
  }
  return resp;
}

/** POST /register with upload progress (fetch has none, XMLHttpRequest has). */
function upload(file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("scan", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "register");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      if (xhr.status === 202) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiError(problemMessage(xhr.responseText, xhr.status, xhr.statusText), xhr.status));
    };
    xhr.onerror = () =>
      reject(new ApiError("the upload was cut off: the server closed the connection or could not be " +
        "reached (a file over the server's upload limit is refused this way)"));
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- page state

const state = { file: null, jobId: null, token: 0 };

function setState(name) {
  document.body.dataset.state = name;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
  if (message) setState("error");
}

function setStatus(text) {
  $("status").textContent = text;
}

function mb(bytes) {
  return (bytes / 1048576).toFixed(bytes < 10485760 ? 2 : 0);
}

// ---------------------------------------------------------------- 3D view

const view = makeView();

function makeView() {
  const canvas = $("canvas");
  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  } catch (err) {
    return null;
  }
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setClearColor(0xf4f5f7, 1);
  const scene = new THREE.Scene();
  const camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8d8f99, 1.6));
  const headlight = new THREE.DirectionalLight(0xffffff, 1.6);
  headlight.position.set(0.3, 0.6, 1);
  camera.add(headlight);
  scene.add(camera);
  const world = new THREE.Group(); // scan frame -> viewer frame (y up)
  scene.add(world);
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = false;
  const v = { renderer, scene, camera, world, controls, objects: {}, home: null, frame: 0 };
  v.render = () => {
    if (v.frame) return;
    v.frame = requestAnimationFrame(() => {
      v.frame = 0;
      renderer.render(scene, camera);
    });
  };
  controls.addEventListener("change", v.render);
  new ResizeObserver(() => {
    const { clientWidth: w, clientHeight: h } = canvas;
    if (!w || !h) return;
    renderer.setSize(w, h, false);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
    v.render();
  }).observe(canvas);
  return v;
}

function clearView() {
  if (!view) return;
  for (const obj of Object.values(view.objects)) {
    view.world.remove(obj);
    obj.traverse((o) => {
      o.geometry?.dispose();
      o.material?.dispose();
    });
  }
  view.objects = {};
  delete document.body.dataset.rendered;
  view.render();
}

function setObject(name, obj) {
  const old = view.objects[name];
  if (old) {
    view.world.remove(old);
    old.traverse((o) => {
      o.geometry?.dispose();
      o.material?.dispose();
    });
  }
  if (obj) {
    obj.name = name;
    view.world.add(obj);
    view.objects[name] = obj;
  } else delete view.objects[name];
  applyToggles();
}

/** A Mesh for indexed or triangle-soup geometry, Points for a point cloud. */
function scanObject(geometry, pointsOnly) {
  const hasColor = !!geometry.attributes.color;
  geometry.userData.hasColor = hasColor;
  if (pointsOnly) {
    geometry.computeBoundingSphere();
    const size = geometry.boundingSphere.radius / 250;
    return new THREE.Points(geometry, new THREE.PointsMaterial({ size, vertexColors: hasColor }));
  }
  if (!geometry.attributes.normal) geometry.computeVertexNormals();
  const material = new THREE.MeshStandardMaterial({
    color: SCAN_GREY, roughness: 0.85, metalness: 0, side: THREE.DoubleSide, vertexColors: hasColor,
  });
  return new THREE.Mesh(geometry, material);
}

function bodyObject(geometry, color) {
  if (!geometry.attributes.normal) geometry.computeVertexNormals();
  const material = new THREE.MeshStandardMaterial({
    color, roughness: 0.45, metalness: 0.05, transparent: true, side: THREE.DoubleSide,
    polygonOffset: true, polygonOffsetFactor: 1, polygonOffsetUnits: 1,
  });
  return new THREE.Mesh(geometry, material);
}

function applyToggles() {
  if (!view) return;
  const o = view.objects;
  const parts = $("show-parts").checked;
  if (o.scan) {
    o.scan.visible = $("show-scan").checked;
    const m = o.scan.material;
    const colored = parts && o.scan.geometry.userData.hasColor;
    if (m.vertexColors !== colored) {
      m.vertexColors = colored;
      m.needsUpdate = true;
    }
    if (m.color) m.color.set(colored ? 0xffffff : SCAN_GREY);
  }
  const opacity = Number($("body-opacity").value);
  for (const name of ["body", "offsets"]) {
    if (!o[name]) continue;
    o[name].visible = $(name === "body" ? "show-body" : "show-offsets").checked;
    o[name].material.opacity = opacity;
    o[name].material.depthWrite = opacity > 0.99;
  }
  view.render();
}

/** Rotate the scan frame so that `up` ("+z", "-y", ...) points to the viewer's +y. */
function orient(up) {
  const axis = { x: [1, 0, 0], y: [0, 1, 0], z: [0, 0, 1] }[up.replace(/^[+-]/, "")] || [0, 1, 0];
  const u = new THREE.Vector3(...axis).multiplyScalar(up.startsWith("-") ? -1 : 1);
  view.world.quaternion.setFromUnitVectors(u, new THREE.Vector3(0, 1, 0));
  view.world.updateMatrixWorld(true);
}

/** Frame everything, looking along `facing` (viewer frame; the body's front) from slightly above. */
function frame(facing) {
  const box = new THREE.Box3().setFromObject(view.world);
  if (box.isEmpty()) return;
  const center = box.getCenter(new THREE.Vector3());
  const size = box.getSize(new THREE.Vector3());
  const radius = size.length() / 2;
  const dir = facing.clone().setY(0);
  if (dir.lengthSq() < 1e-8) dir.set(0, 0, 1);
  dir.normalize().add(new THREE.Vector3(0, 0.18, 0)).normalize();
  const fov = THREE.MathUtils.degToRad(view.camera.fov);
  const dist = (radius / Math.sin(fov / 2)) * 1.02;
  view.camera.near = dist / 100;
  view.camera.far = dist * 100;
  view.camera.position.copy(center).addScaledVector(dir, dist);
  view.camera.updateProjectionMatrix();
  view.controls.target.copy(center);
  view.controls.update();
  view.home = { position: view.camera.position.clone(), target: center.clone() };
  view.render();
}

/** The body's front in the viewer frame, from params.json (to_scan and global_orient). */
function facingFromParams(params) {
  try {
    const m = params.to_scan;
    const rot = new THREE.Matrix4().set(
      m[0][0], m[0][1], m[0][2], 0, m[1][0], m[1][1], m[1][2], 0, m[2][0], m[2][1], m[2][2], 0, 0, 0, 0, 1);
    const go = new THREE.Vector3(...params.global_orient);
    const angle = go.length();
    const front = new THREE.Vector3(0, 0, 1);
    if (angle > 1e-9) front.applyAxisAngle(go.normalize(), angle);
    front.applyMatrix4(rot).normalize(); // scan frame
    return front.applyQuaternion(view.world.quaternion);
  } catch {
    return new THREE.Vector3(0, 0, 1);
  }
}

/** Before the fit: the up axis from the option, else the longest extent; look along the thinnest side. */
function guessFrame(geometry) {
  geometry.computeBoundingBox();
  const size = geometry.boundingBox.getSize(new THREE.Vector3()).toArray();
  let up = $("up").value;
  if (up === "auto") up = "+" + "xyz"[size.indexOf(Math.max(...size))];
  orient(up);
  const axis = up.replace(/^[+-]/, "");
  const rest = ["x", "y", "z"].filter((a) => a !== axis);
  const thin = rest.reduce((a, b) => (size["xyz".indexOf(a)] < size["xyz".indexOf(b)] ? a : b));
  const dir = new THREE.Vector3(thin === "x" ? 1 : 0, thin === "y" ? 1 : 0, thin === "z" ? 1 : 0);
  frame(dir.applyQuaternion(view.world.quaternion));
}

async function previewLocalFile(file) {
  if (!view) return;
  clearView();
  const ext = file.name.split(".").pop().toLowerCase();
  if (!["ply", "obj", "stl"].includes(ext) || file.size > PREVIEW_MAX_BYTES) {
    setStatus(`${file.name}: the 3D view appears once the scan is registered`);
    return;
  }
  try {
    const buffer = await file.arrayBuffer();
    let geometry;
    if (ext === "ply") geometry = new PLYLoader().parse(buffer);
    else if (ext === "stl") geometry = new STLLoader().parse(buffer);
    else {
      const group = new OBJLoader().parse(new TextDecoder().decode(buffer));
      const first = group.children.find((c) => c.geometry?.attributes.position?.count);
      geometry = first?.geometry;
    }
    if (!geometry || !geometry.attributes.position?.count) throw new Error("no geometry");
    const cloud = ext === "ply" && !geometry.index;
    setObject("scan", scanObject(geometry, cloud));
    guessFrame(geometry);
    setStatus(`${file.name}: preview of your file (not yet registered)`);
  } catch (err) {
    setStatus(`${file.name}: no preview in the browser (${err.message}); the server will still read it`);
  }
}

async function loadPly(url) {
  const buffer = await (await api(url)).arrayBuffer();
  return new PLYLoader().parse(buffer);
}

async function showFit(id, params) {
  if (!view) {
    setStatus("finished (WebGL is not available in this browser: no 3D view, downloads below)");
    return;
  }
  const base = `jobs/${id}/mesh?format=ply&kind=`;
  const [scan, body, offsets] = await Promise.allSettled([
    loadPly(base + "scan_parts"), loadPly(base + "body"), loadPly(base + "body_offsets"),
  ]);
  if (body.status === "rejected") throw body.reason;
  clearView();
  if (scan.status === "fulfilled") setObject("scan", scanObject(scan.value, !scan.value.index));
  setObject("body", bodyObject(body.value, BODY_BLUE));
  const hasOffsets = offsets.status === "fulfilled";
  $("show-offsets").disabled = !hasOffsets;
  $("show-offsets").checked = false;
  if (hasOffsets) setObject("offsets", bodyObject(offsets.value, OFFSETS_GOLD));
  applyToggles();
  orient(params.up || "+y");
  frame(facingFromParams(params));
  requestAnimationFrame(() => requestAnimationFrame(() => (document.body.dataset.rendered = "body")));
}

// ---------------------------------------------------------------- report and downloads

/** Green (0) -> yellow -> red (1). */
function ramp(t) {
  const stops = [[42, 157, 75], [233, 196, 106], [214, 40, 40]];
  const x = Math.min(Math.max(t, 0), 1) * 2;
  const i = Math.min(Math.floor(x), 1);
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c.join(",")})`;
}

function esc(text) {
  const span = document.createElement("span");
  span.textContent = String(text);
  return span.innerHTML;
}

function fmt(v, digits = 1) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–";
}

function showReport(report) {
  const s = report.scan_to_body_mm || {};
  const o = report.scan_to_body_offsets_mm;
  const lines = [
    `scan → body: mean <b>${fmt(s.mean)}</b> mm, median ${fmt(s.median)}, p95 ${fmt(s.p95)}`,
    o ? `with offsets: mean <b>${fmt(o.mean)}</b> mm, median ${fmt(o.median)}, p95 ${fmt(o.p95)}` : null,
    `${esc(report.num_scan_points ?? "?")} scan points · ${fmt(report.timings_s?.total)} s on ` +
      esc(report.device ?? "?"),
    report.pipeline || report.method ? `<i>${esc(report.method || report.pipeline + " pipeline")}</i>` : null,
  ];
  $("summary").innerHTML = lines.filter(Boolean).join("<br>");
  const per = report.per_part_mm || {};
  const names = Object.keys(PART_COLORS).filter((n) => n in per);
  for (const n of Object.keys(per)) if (!names.includes(n)) names.push(n);
  const max = Math.max(1, ...names.map((n) => per[n]).filter(Number.isFinite));
  const tbody = $("parts").querySelector("tbody");
  tbody.replaceChildren();
  for (const name of names) {
    const value = per[name];
    const tr = document.createElement("tr");
    tr.dataset.part = name;
    const color = PART_COLORS[name] ? `rgb(${PART_COLORS[name].join(",")})` : "transparent";
    tr.innerHTML =
      `<td><span class="swatch" style="background:${color}"></span>${esc(name.replaceAll("_", " "))}</td>` +
      `<td class="num">${fmt(value)}</td>` +
      `<td class="bar-col"><div class="cell-bar" style="width:${(100 * value) / max}%;` +
      `background:${ramp(value / max)}"></div></td>`;
    tbody.append(tr);
  }
  $("scale-max").textContent = `${fmt(max)} mm`;
  $("results").hidden = false;
}

function showDownloads(id, withOffsets) {
  const base = `jobs/${id}`;
  const files = [
    ["params.json", `${base}/result`],
    ["report.json", `${base}/report`],
    ["preview.png", `${base}/preview`],
    ...["obj", "ply", "glb"].map((f) => [`body.${f}`, `${base}/mesh?kind=body&format=${f}`]),
    ...(withOffsets
      ? ["obj", "ply", "glb"].map((f) => [`body_offsets.${f}`, `${base}/mesh?kind=body_offsets&format=${f}`])
      : []),
    ["scan_parts.ply", `${base}/mesh?kind=scan_parts&format=ply`],
  ];
  const box = $("downloads");
  box.replaceChildren();
  for (const [name, url] of files) {
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    a.dataset.name = name;
    a.textContent = name;
    a.addEventListener("click", (e) => {
      e.preventDefault();
      download(url, name);
    });
    box.append(a);
  }
}

/** Fetch with the API key (a plain link cannot send headers), then save the blob. */
async function download(url, name) {
  try {
    const blob = await (await api(url)).blob();
    const href = URL.createObjectURL(blob);
    const a = Object.assign(document.createElement("a"), { href, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 30000);
  } catch (err) {
    showError(`${name}: ${err.message}`);
  }
}

// ---------------------------------------------------------------- job flow

function statusWords(job) {
  const stage = job.progress?.stage || job.status;
  const pct = Math.round((job.progress?.fraction || 0) * 100);
  return {
    queued: "queued, waiting for a worker",
    started: `running: ${stage} (${pct}%)`,
    finished: "finished",
    failed: "failed",
    canceled: "canceled",
  }[job.status] || job.status;
}

async function follow(id) {
  const token = ++state.token;
  state.jobId = id;
  showError("");
  $("results").hidden = true;
  $("job-label").textContent = id.slice(0, 8);
  $("job-label").title = id;
  if (location.hash !== `#job=${id}`) history.replaceState(null, "", `#job=${id}`);
  $("cancel").hidden = false;
  let failures = 0;
  while (token === state.token) {
    let job;
    try {
      job = await (await api(`jobs/${id}`)).json();
      failures = 0;
    } catch (err) {
      if ([401, 404].includes(err.status) || ++failures > 5) {
        $("cancel").hidden = true;
        showError(err.message);
        if (err.status === 401) $("api-key").focus();
        return;
      }
      await sleep(1500);
      continue;
    }
    if (token !== state.token) return;
    setState(job.status);
    $("job-bar").value = job.progress?.fraction || 0;
    $("job-text").textContent = `${job.progress?.stage || job.status} ${Math.round((job.progress?.fraction || 0) * 100)}%`;
    setStatus(statusWords(job));
    if (job.status === "finished") {
      $("cancel").hidden = true;
      await showResults(id);
      return;
    }
    if (job.status === "failed" || job.status === "canceled") {
      $("cancel").hidden = true;
      showError(job.error || `the job was ${job.status}`);
      setState(job.status);
      return;
    }
    await sleep(POLL_MS);
  }
}

async function showResults(id) {
  setStatus("finished: loading the meshes…");
  try {
    const [params, report] = await Promise.all([
      api(`jobs/${id}/result`).then((r) => r.json()),
      api(`jobs/${id}/report`).then((r) => r.json()),
    ]);
    showReport(report);
    showDownloads(id, !!report.scan_to_body_offsets_mm);
    await showFit(id, params);
    setStatus("finished");
    setState("finished");
  } catch (err) {
    showError(`the job finished but its results could not be loaded: ${err.message}`);
  }
}

async function submit() {
  if (!state.file) return;
  showError("");
  $("submit").disabled = true;
  $("options").open = false; // room for the report
  $("results").hidden = true;
  $("job-bar").value = 0;
  $("job-text").textContent = "";
  $("job-label").textContent = "";
  setState("uploading");
  setStatus(`uploading ${state.file.name}…`);
  const fields = {
    units: $("units").value,
    up: $("up").value,
    offsets: $("offsets").checked ? "true" : "false",
    device: $("device").value,
  };
  if ($("model").value.trim()) fields.model = $("model").value.trim();
  try {
    const job = await upload(state.file, fields, (loaded, total) => {
      $("upload-bar").value = loaded / total;
      $("upload-text").textContent = `${mb(loaded)} / ${mb(total)} MB`;
    });
    $("upload-bar").value = 1;
    await follow(job.id);
  } catch (err) {
    showError(err.message);
    setStatus("");
    if (err.status === 401) $("api-key").focus();
  } finally {
    $("submit").disabled = !state.file;
  }
}

function pick(file) {
  if (!file) return;
  state.file = file;
  $("drop").classList.add("has-file");
  $("drop-text").innerHTML = "";
  $("drop-text").append(document.createTextNode(`${file.name} (${mb(file.size)} MB)`));
  $("drop-text").insertAdjacentHTML("beforeend", "<br><small>drop or pick another file to replace it</small>");
  $("submit").disabled = false;
  $("upload-bar").value = 0;
  $("upload-text").textContent = "";
  showError("");
  state.token++; // stop following an earlier job
  $("results").hidden = true;
  setState("picked");
  previewLocalFile(file);
}

// ---------------------------------------------------------------- wiring

function init() {
  const key = $("api-key");
  key.value = localStorage.getItem(KEY_STORE) || "";
  key.addEventListener("input", () => localStorage.setItem(KEY_STORE, key.value.trim()));

  const drop = $("drop");
  $("file").addEventListener("change", (e) => pick(e.target.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    pick(e.dataTransfer?.files?.[0]);
  });

  $("submit").addEventListener("click", submit);
  $("cancel").addEventListener("click", async () => {
    if (!state.jobId) return;
    try {
      await api(`jobs/${state.jobId}`, { method: "DELETE" });
      setStatus("cancel requested");
    } catch (err) {
      showError(err.message);
    }
  });
  $("open-job").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("job-id").value.trim();
    if (id) follow(id);
  });
  for (const id of ["show-scan", "show-parts", "show-body", "show-offsets", "body-opacity"]) {
    $(id).addEventListener("input", applyToggles);
  }
  $("reset-view").addEventListener("click", () => {
    if (!view?.home) return;
    view.camera.position.copy(view.home.position);
    view.controls.target.copy(view.home.target);
    view.controls.update();
    view.render();
  });
  if (!view) showError("WebGL is not available in this browser: uploads, reports and downloads still work.");
  setState("idle");
  const match = location.hash.match(/job=([0-9a-zA-Z_-]+)/);
  if (match) follow(match[1]);
}

init();
