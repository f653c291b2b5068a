"""The web viewer at `/`, end to end in headless Chromium (Debian's `chromium`, driven by playwright).

Runs its own Redis, worker and API (uvicorn) so that the pipeline can be chosen:
  LOOPREG_VIEWER_PIPELINE=full  run the real fit instead of the interim one (slow: ~20-60 s per scan)
  LOOPREG_VIEWER_SCAN=path      the scan to upload (default: the default body in cm, see conftest)
  LOOPREG_SAVE_SCREENSHOT=1     write the viewer's screenshot to docs/viewer.png
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import trimesh
from svc_helpers import ROOT, RedisServer, Workers, service_env

from loopreg.serve import free_port, wait_for_port

CHROMIUM = os.environ.get("LOOPREG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL on the CPU (no GPU on CI)
]  # fmt: skip
BACKGROUND = np.array([244, 245, 247])  # renderer clear colour in viewer.js
STATIC = ROOT / "service" / "static"

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see the dev extra)")

PIPELINE = os.environ.get("LOOPREG_VIEWER_PIPELINE", "interim")
JOB_TIMEOUT_MS = 45_000 if PIPELINE == "interim" else 300_000


def _start_api(env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT)  # fmt: skip
    wait_for_port("127.0.0.1", int(env["LOOPREG_PORT"]), proc, timeout=30)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Redis + one worker + two APIs (one open, one with an API key); yields their base URLs."""
    tmp = tmp_path_factory.mktemp("viewer")
    redis = RedisServer(free_port(), tmp).start()
    (tmp / "storage").mkdir()
    # a short sleep per progress report, so that the page shows the running stages (interim takes ~1 s)
    delay = "0.3" if PIPELINE == "interim" else "0"
    env = service_env(redis.url, tmp / "storage", pipeline=PIPELINE, stage_delay_s=delay)
    workers = Workers(env, tmp)
    apis: list[subprocess.Popen] = []
    try:
        workers.start()
        urls = {}
        for name, extra in (("open", {}), ("keyed", {"LOOPREG_API_KEYS": "s3cret"})):
            port = free_port()
            apis.append(_start_api({**env, **extra, "LOOPREG_HOST": "127.0.0.1", "LOOPREG_PORT": str(port)},
                                   tmp / f"api-{name}.log"))  # fmt: skip
            urls[name] = f"http://127.0.0.1:{port}/"
        yield urls
    finally:
        for proc in apis:
            _stop(proc)
        workers.stop_all()
        redis.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


SEEN_JS = """() => {
  window.__seen = [];
  const note = () => window.__seen.push([document.body.dataset.state,
                                         document.getElementById("job-text").textContent]);
  new MutationObserver(note).observe(document.body, {attributes: true, childList: true, subtree: true});
}"""


def _canvas(page) -> np.ndarray:
    """The WebGL canvas's own pixels (not the overlays on top of it), after two animation frames."""
    from PIL import Image

    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    url = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _drawn(img: np.ndarray) -> float:
    """Share of pixels that differ from the background."""
    return float((np.abs(img - BACKGROUND).sum(-1) > 30).mean())


def _bluish(img: np.ndarray) -> float:
    """Share of pixels in the body's blue (viewer.js BODY_BLUE, shaded)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return float(((b > r + 40) & (b > g + 10)).mean())


def test_upload_progress_view_report_and_download(page, stack, scan_cm):
    scan = Path(os.environ.get("LOOPREG_VIEWER_SCAN") or scan_cm)
    page.goto(stack["open"])
    assert page.title() == "LoopReg viewer"
    page.set_input_files("#file", str(scan))
    page.wait_for_function("document.body.dataset.state === 'picked'")
    page.evaluate(SEEN_JS)
    page.click("#submit")
    page.wait_for_function(
        "document.body.dataset.rendered === 'body' || document.body.dataset.state === 'error'",
        timeout=JOB_TIMEOUT_MS,
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    assert page.eval_on_selector("#upload-bar", "e => e.value") == 1
    assert page.eval_on_selector("#job-bar", "e => e.value") == 1
    assert page.locator("#status").text_content() == "finished"
    seen = page.evaluate("window.__seen")
    running = [text for state, text in seen if state == "started"]
    assert any(re.fullmatch(r"[a-z_]+ \d+%", t) and t != "started 0%" for t in running), seen

    # per-part report: one row per part, numbers in mm, a coloured bar each
    rows = page.locator("#parts tbody tr")
    assert rows.count() >= 10
    report_parts = {rows.nth(i).get_attribute("data-part") for i in range(rows.count())}
    assert {"head", "torso", "left_foot"} <= report_parts
    first = rows.nth(0).locator("td.num").text_content()
    assert re.fullmatch(r"\d+\.\d", first), first

    # the canvas shows scan + body; the body alone is still drawn (and blue)
    both = _canvas(page)
    assert _drawn(both) > 0.03, f"canvas nearly blank: {_drawn(both):.4f}"
    page.uncheck("#show-scan")
    body_only = _canvas(page)
    assert _drawn(body_only) > 0.02 and _bluish(body_only) > 0.02, (_drawn(body_only), _bluish(body_only))
    page.check("#show-body")
    page.uncheck("#show-body")
    assert _drawn(_canvas(page)) < 0.001  # both hidden: background only
    page.check("#show-body")
    page.check("#show-scan")
    _canvas(page)
    if os.environ.get("LOOPREG_SAVE_SCREENSHOT") == "1":
        page.screenshot(path=str(ROOT / "docs" / "viewer.png"))

    # every output has a download button; body.obj downloads as a valid OBJ
    names = page.locator("#downloads a").evaluate_all("els => els.map(e => e.dataset.name)")
    assert {"params.json", "report.json", "preview.png", "body.obj", "body.ply", "body.glb",
            "scan_parts.ply"} <= set(names)  # fmt: skip
    with page.expect_download() as info:
        page.click('#downloads a[data-name="body.obj"]')
    download = info.value
    assert download.suggested_filename == "body.obj"
    mesh = trimesh.load(download.path(), file_type="obj", process=False)
    assert len(mesh.vertices) > 1000 and len(mesh.faces) > 1000
    with page.expect_download() as info:
        page.click('#downloads a[data-name="params.json"]')
    params = json.loads(Path(info.value.path()).read_text())
    assert np.asarray(params["to_scan"]).shape == (4, 4)
    assert not page.errors, page.errors


def test_api_errors_are_shown_as_their_detail(page, stack, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a scan")
    page.goto(stack["open"])
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=15_000)
    answer = httpx.post(stack["open"] + "register", files={"scan": ("notes.txt", b"not a scan")})
    detail = answer.json()["detail"]
    assert page.locator("#error").text_content() == detail
    assert "unsupported file type .txt" in detail
    assert not page.errors, page.errors


def test_api_key_is_sent_and_remembered(page, stack, scan_cm):
    page.goto(stack["keyed"])
    page.set_input_files("#file", str(scan_cm))
    page.click("#submit")
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=15_000)
    assert "X-API-Key" in page.locator("#error").text_content()

    page.fill("#api-key", "s3cret")
    page.evaluate("document.getElementById('options').open = true")
    page.check("#offsets")
    page.click("#submit")
    page.wait_for_function(
        "document.body.dataset.rendered === 'body' || document.body.dataset.state === 'error'",
        timeout=JOB_TIMEOUT_MS,
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
    assert page.is_enabled("#show-offsets")  # the job ran with offsets: the offset body can be shown
    page.check("#show-offsets")
    names = page.locator("#downloads a").evaluate_all("els => els.map(e => e.dataset.name)")
    assert "body_offsets.obj" in names
    with page.expect_download() as info:  # downloads send the key too
        page.click('#downloads a[data-name="body_offsets.obj"]')
    assert trimesh.load(info.value.path(), file_type="obj", process=False).faces.shape[0] > 1000
    assert page.evaluate("localStorage.getItem('loopreg.apiKey')") == "s3cret"
    page.reload()
    assert page.input_value("#api-key") == "s3cret"
    assert not page.errors, page.errors


def test_static_files_are_vendored_and_served(stack):
    index = httpx.get(stack["keyed"])  # the page needs no key: it asks for one
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    for path in ("static/viewer.js", "static/viewer.css", "static/vendor/three/three.module.js",
                 "static/vendor/three/three.core.js", "static/vendor/three/addons/controls/OrbitControls.js",
                 "static/vendor/three/LICENSE"):  # fmt: skip
        assert httpx.get(stack["keyed"] + path).status_code == 200, path
    missing = httpx.get(stack["keyed"] + "static/nope.js")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert httpx.get(stack["keyed"] + "static/%2e%2e/app.py").status_code == 404
    assert "MIT License" in (STATIC / "vendor" / "three" / "LICENSE").read_text()
    for file in ("index.html", "viewer.js"):  # nothing fetched from a CDN at run time
        assert not re.search(r"""(src|href|from|import)\s*=?\s*["']https?://""", (STATIC / file).read_text())


def test_part_colours_match_the_body_model():
    from loopreg.body.parts import PART_COLORS, PART_NAMES

    js = (STATIC / "viewer.js").read_text()
    block = js.split("// BEGIN PART_COLORS")[1].split("// END PART_COLORS")[0]
    body = block[block.index("{") : block.rindex("}") + 1]
    colours = json.loads(re.sub(r"(\w+):", r'"\1":', body).replace(",\n}", "\n}"))
    assert list(colours) == list(PART_NAMES)
    assert np.array_equal(np.array(list(colours.values())), PART_COLORS)
