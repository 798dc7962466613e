"""The student's path, in a real browser: every notebook opened in JupyterLab and run with "Run All Cells".

A JupyterLab server (127.0.0.1 only, with a token) serves a temporary folder holding copies of
`notebooks/*.ipynb`; `CIFAR_LAB_QUICK=1` in its environment makes every kernel run the notebooks in quick
mode (synthetic data, 1 epoch). Headless Chromium, driven by Selenium, opens each notebook, waits for the
kernel, clicks Run > Run All Cells, waits for the run to end and then checks what a student would see:
every code cell numbered, no traceback, figures shown as images and (for the notebooks that train) the
progress bars rendered as ipywidgets. A screenshot of each notebook goes to the test's temporary folder
and to `tests/browser_screenshots/` (git-ignored).

Needs Chromium, its driver and Selenium; without them these tests skip:
    apt-get install chromium chromium-driver && pip install selenium
(`.ci/run` installs them where it can.) It checks only what the page shows, none of the library's internals.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SCREENSHOTS = REPO / "tests" / "browser_screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver && pip install selenium"

SERVER_START_S = 90       # JupyterLab answering /api/status
PAGE_READY_S = 120        # notebook rendered and its kernel idle
RUN_START_S = 30          # Run All visibly started (a cell queued or the kernel busy)
RUN_S = 8 * 60            # the whole notebook run
POLL_S = 0.5

# Chromium as it runs on these machines (no sandbox as root, no background traffic), and every host name
# but 127.0.0.1 made unresolvable, so that the page (e.g. the "Open in Colab" badge) requests nothing else.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                  "--window-size=1280,4000"]


def _missing():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None,
                                reason=f"browser test needs Chromium and Selenium ({_missing()}): {INSTALL_HINT}")]


# ---------------------------------------------------------------- the JupyterLab server

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port, token, root, runtime_dir, log):
        self.port, self.token, self.root, self.runtime_dir, self.log = port, token, root, runtime_dir, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, method, path, timeout=10):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self):
        """Shuts down every kernel of the server (the page that used them is closed first)."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
        for kernel in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)

    def log_tail(self, n=4000):
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _kill_leftover_kernels(runtime_dir):
    """Kernels run in sessions of their own: kill any still running on this server's connection files."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(runtime_dir) in cmdline and "ipykernel" in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("jupyterlab")
    root, config, runtime, settings, workspaces = (base / d for d in
                                                    ("root", "config", "runtime", "settings", "workspaces"))
    for d in (root, config, runtime, settings, workspaces):
        d.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy(nb, root / nb.name)
    # User settings in a folder of our own: no "fetch Jupyter news?" toast, no update check; every cell kept in
    # the DOM (no windowing) so that the checks and the screenshot see the whole notebook.
    for plugin, values in {"apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, CIFAR_LAB_QUICK="1", JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(runtime),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
               # kernels import this checkout's cifar_lab, whatever `pip install -e` pointed at
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("MPLBACKEND", None)  # tests/conftest.py sets Agg; a student's kernel uses the inline backend
    env.pop("JUPYTER_TOKEN", None)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--allow-root", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly",  # the "pypi" one may query PyPI
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={workspaces}",
           "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: kernel status and cell outputs
           # safety net should this process die without stopping the server: it ends itself when idle
           "--ServerApp.shutdown_no_activity_timeout=1200", "--MappingKernelManager.cull_idle_timeout=1200",
           "--MappingKernelManager.cull_interval=60"]
    log = base / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(port, token, root, runtime, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status", timeout=5)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{server.log_tail()}")
                time.sleep(0.5)
        print(f"\nJupyterLab on {server.base} (root {root}, log {log})")
        yield server
    finally:
        try:
            server.shutdown_sessions()
            server.api("POST", "/api/shutdown", timeout=10)  # stops its kernels, then itself
        except (urllib.error.URLError, OSError, ValueError):
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        _kill_leftover_kernels(runtime)


# ---------------------------------------------------------------- the browser

@pytest.fixture
def browser(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={lab.root.parent / ('chromium-' + secrets.token_hex(4))}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        lab.shutdown_sessions()  # this notebook's kernel, so that the next one has both cores


# Page state, read by the test every poll. The kernel's status comes from JupyterLab's own session
# (window.jupyterapp, exposed by --LabApp.expose_app_in_browser): the toolbar's indicator already says
# "idle" while the kernel is still starting.
STATE_JS = """
const app = window.jupyterapp;  // the notebook among the main-area widgets: headless Chromium may leave none focused
const panel = app && ([...app.shell.widgets('main')].find(w => w.sessionContext) || app.shell.currentWidget);
const sc = panel && panel.sessionContext, kernel = sc && sc.session && sc.session.kernel;
const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
    .map(e => e.textContent.trim());
const dialogs = [...document.querySelectorAll('.jp-Dialog')].map(e => e.innerText.trim().replace(/\\s+/g, ' '));
return {ready: !!(sc && sc.isReady), kernel: kernel ? kernel.status : null,
        kernelName: sc ? sc.kernelDisplayName : null, prompts, dialogs,
        indicator: (document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator') || {dataset: {}})
            .dataset.status || null};
"""

# ipywidgets 8 gives a progress bar the class widget-hprogress (jupyter-widget-hprogress in its CSS too).
# fit's tqdm bars are left=False, so they vanish when their epoch ends: a MutationObserver records every bar
# that appears in an output, and the text of its row ("epoch 1/1: 100% ... 3/3 [...]").
PROGRESS_SELECTOR = ".widget-hprogress, .jupyter-widget-hprogress, .widget-vprogress, .jupyter-widget-vprogress"
WATCH_PROGRESS_JS = """
if (!window.__progress) {
  const sel = arguments[0];
  const seen = window.__progress = {count: 0, texts: []};
  const note = (mutations) => {
    const bars = [...document.querySelectorAll('.jp-OutputArea-output :is(' + sel + ')')];
    for (const m of mutations) {  // also a bar added and removed again before this callback ran
      for (const node of m.addedNodes) {
        if (node.nodeType !== 1) continue;
        if (node.matches(sel)) bars.push(node);
        bars.push(...node.querySelectorAll(sel));
      }
    }
    for (const el of bars) {
      if (!el.__counted) { el.__counted = true; seen.count++; }
      const row = el.closest('.widget-hbox') || el;
      const text = row.innerText.trim().replace(/\\s+/g, ' ');
      if (text && !seen.texts.includes(text) && seen.texts.length < 500) seen.texts.push(text);
    }
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true, characterData: true,
                                                     attributes: true, attributeFilter: ['style', 'class']});
}
"""

# What the notebook holds once the run is over: per code cell its prompt, its outputs' types (from
# JupyterLab's model) and the text of its stderr outputs (warnings are allowed, tracebacks are not).
RESULT_JS = """
const app = window.jupyterapp;
const panel = [...app.shell.widgets('main')].find(w => w.sessionContext) || app.shell.currentWidget;
const cells = [];
for (const cell of panel.content.widgets) {
  if (cell.model.type !== 'code') continue;
  const outputs = cell.model.outputs.toJSON();
  cells.push({prompt: cell.node.querySelector('.jp-InputArea-prompt').textContent.trim(),
              count: cell.model.executionCount,
              types: outputs.map(o => o.output_type),
              errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
              stderr: [...cell.node.querySelectorAll(
                  '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.innerText),
              source: cell.model.sharedModel.getSource().slice(0, 80)});
}
const outputs = '.jp-NotebookPanel .jp-OutputArea-output';
const images = [...document.querySelectorAll('.jp-NotebookPanel .jp-RenderedImage img')];
return {cells,
        errorOutputs: document.querySelectorAll(outputs + '[data-mime-type="application/vnd.jupyter.error"]').length,
        tracebacks: [...document.querySelectorAll(outputs)].filter(e => e.innerText.includes('Traceback'))
            .map(e => e.innerText.slice(0, 2000)),
        images: images.length,
        brokenImages: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
        widgetErrors: [...document.querySelectorAll(outputs)].map(e => e.innerText)
            .filter(t => /Error displaying widget|model not found|Loading widget/.test(t)),
        progressNow: document.querySelectorAll('.jp-OutputArea-output :is(' + arguments[0] + ')').length,
        progress: window.__progress || {count: 0, texts: []}};
"""


def _wait(driver, what, seconds, predicate):
    """Polls STATE_JS until predicate(state) is true; fails (with the last state) after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        state = driver.execute_script(STATE_JS)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}; last state: {state}")
        time.sleep(POLL_S)


def _screenshot(driver, name, out_dir):
    """A screenshot as tall as the notebook (up to 16,000 px): the window is grown to fit its scroll height."""
    heights = driver.execute_script("""
        const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
                  || document.querySelector('.jp-NotebookPanel-notebook');
        if (s) s.scrollTop = 0;
        return s ? [s.scrollHeight, s.clientHeight] : [0, 0];""")
    width, height = 1280, 4000
    if heights[0] > heights[1]:
        height = min(16000, max(height, driver.execute_script("return window.outerHeight") + heights[0] - heights[1]))
    driver.set_window_size(width, height)
    time.sleep(1.5)  # relayout, and images decoded
    path = out_dir / f"{name}.png"
    driver.save_screenshot(str(path))
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SCREENSHOTS / path.name)
    print(f"\nscreenshot of {name}: {path} (copy: {SCREENSHOTS / path.name}; notebook {heights[0]} px tall)")
    return path


def _run_all(driver):
    """Run > Run All Cells, clicked in JupyterLab's menu bar, as a student does.

    Lumino opens a menu-bar menu on mousedown and runs an item on mouseup; Selenium's click sends both. The
    menu item is found by its command (`runmenu:run-all`, which runs `notebook:run-all-cells` on the current
    notebook), not by its label, so a translated UI would work too.
    """
    from selenium.webdriver.common.by import By

    menu = next((m for m in driver.find_elements(By.CSS_SELECTOR, "#jp-menu-panel .lm-MenuBar-item")
                 if m.text.strip() == "Run"), None)
    assert menu is not None, "JupyterLab's menu bar has no Run menu"
    menu.click()
    deadline = time.monotonic() + 10
    while True:
        items = driver.find_elements(By.CSS_SELECTOR, '.lm-Menu .lm-Menu-item[data-command="runmenu:run-all"]')
        if items and items[0].is_displayed():
            items[0].click()
            return
        if time.monotonic() > deadline:
            pytest.fail("the Run menu did not show 'Run All Cells' within 10 s")
        time.sleep(0.2)


NUMBERED = re.compile(r"^\[\d+\]:$")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_all_cells_in_jupyterlab(notebook, lab, browser, tmp_path_factory):
    from selenium.webdriver.common.by import By

    name = notebook.stem
    out_dir = tmp_path_factory.getbasetemp() / "browser_screenshots"
    out_dir.mkdir(exist_ok=True)
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    code_cells, code = len(cells), "\n".join("".join(c["source"]) for c in cells)
    # Notebooks that train show fit's tqdm progress bars, but for those that turn them off: 03 trains ten
    # small models with progress=False, printing one line per epoch instead.
    shows_progress = "fit(" in code and "progress=False" not in code

    t0 = time.monotonic()
    # ?reset: start from an empty workspace, not with the previous test's notebook reopened
    browser.get(f"{lab.base}/lab/tree/{notebook.name}?reset&token={lab.token}")

    # 1. the notebook is rendered and its kernel (python3, from the notebook's metadata) is idle. A dialog
    # at this point (kernel selection, say) is accepted with its default.
    dialogs = []

    def ready(state):
        if state["dialogs"]:
            dialogs.extend(state["dialogs"])
            for button in browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept"):
                button.click()
            return False
        return state["ready"] and state["kernel"] == "idle" and len(state["prompts"]) == code_cells
    state = _wait(browser, "the notebook and an idle kernel", PAGE_READY_S, ready)
    if dialogs:
        print(f"\n{name}: dismissed dialogs {dialogs}")
    assert "Python 3" in (state["kernelName"] or ""), state
    browser.execute_script(WATCH_PROGRESS_JS, PROGRESS_SELECTOR)
    before = state["prompts"]
    t_open = time.monotonic()

    # 2. Run All, then wait for it to start (a cell queued, the kernel busy, or prompts changed) ...
    _run_all(browser)
    _wait(browser, "Run All to start", RUN_START_S,
          lambda s: s["kernel"] == "busy" or "[*]:" in s["prompts"] or s["prompts"] != before)
    # ... and to end: no cell queued or running ([*]) and the kernel idle, twice in a row. This also ends
    # a run that stopped at an error (the cells after it are then left unnumbered, which is checked below).
    settled = []

    def finished(state):
        done = state["kernel"] == "idle" and "[*]:" not in state["prompts"] and not state["dialogs"]
        settled.append(done)
        return done and len(settled) >= 2 and settled[-2]
    try:
        state = _wait(browser, f"{name} to finish (Run All)", RUN_S, finished)
    finally:
        run_s = time.monotonic() - t_open
        shot = _screenshot(browser, name, out_dir)
    result = browser.execute_script(RESULT_JS, PROGRESS_SELECTOR)
    print(f"{name}: opened in {t_open - t0:.1f} s, ran in {run_s:.1f} s; {len(result['cells'])} code cells, "
          f"{result['images']} images, {result['progress']['count']} progress bars seen"
          + (f" (last: {result['progress']['texts'][-1]!r})" if result['progress']['texts'] else ""))
    for cell in result["cells"]:
        for text in cell["stderr"]:
            print(f"  stderr of [{cell['count']}] {cell['source']!r}: {text[:300]!r}")

    # 3. what the student sees
    unfinished = [(c["prompt"], c["source"]) for c in result["cells"] if not NUMBERED.match(c["prompt"])]
    assert not unfinished, f"{name}: code cells without an execution count (see {shot}): {unfinished}"
    assert len(result["cells"]) == code_cells
    errors = [(c["count"], c["errors"]) for c in result["cells"] if c["errors"]]
    assert not errors, f"{name}: cells raised (see {shot}): {errors}"
    assert result["errorOutputs"] == 0 and not result["tracebacks"], \
        f"{name}: a traceback is shown (see {shot}): {result['tracebacks']}"
    assert result["images"] >= 1, f"{name}: no figure displayed as an image (see {shot})"
    assert result["brokenImages"] == 0, f"{name}: {result['brokenImages']} images failed to load (see {shot})"
    assert not result["widgetErrors"], f"{name}: a widget failed to render: {result['widgetErrors']}"
    if shows_progress:
        assert result["progress"]["count"] >= 1, \
            f"{name}: no progress bar rendered as an ipywidget while training (see {shot})"
