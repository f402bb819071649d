"""A student's path in a real browser: JupyterLab as `make lab` serves it, driven by
headless Chromium (Debian's `chromium`, which `make test` installs) through Playwright.

On the untouched Lab 01, Run All stops at the first visible check with the message that
names the function to write (labkit.stubs), without a traceback. On Lab 01 solved, every
cell runs, the training progress bars render as widgets (not as text), the figures as
images, and no cell shows an error.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from autograder.build import solved_notebook
from autograder.labs import all_labs

LAB01 = all_labs()[0]
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
SERVER_START_S = 120
RUN_ALL_S = 900  # a solved lab: about a minute idle, 10 minutes measured at load 17


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # not a skip: make test installs it, a missing browser is a defect
        pytest.fail("chromium is not installed: `make test` installs it (apt install chromium)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab serving a folder with Lab 01 untouched and Lab 01 solved; its URL and
    token. The app is exposed to the page so that the test can run commands."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(LAB01.notebook, root / LAB01.notebook.name)
    (root / "solved").mkdir()
    nbformat.write(solved_notebook(LAB01), root / "solved" / LAB01.notebook.name)
    home = root.parent / "home"
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / ".ipython")}
    # Every cell in the page (JupyterLab 4 otherwise detaches the cells out of view), so
    # that the test sees every output; nothing else of a student's settings changes.
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / \
        "notebook-extension" / "tracker.jupyterlab-settings"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"windowingMode": "none"}')
    env.pop("MPLBACKEND", None)  # the notebook's inline backend, as a student has it
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if os.getuid() == 0:
        cmd.append("--allow-root")  # what make lab adds as root
    log = (root.parent / "jupyterlab.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("JupyterLab did not start:\n" +
                            (root.parent / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield base, token
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        # --no-sandbox: Chromium's own sandbox cannot start as root (CI, containers)
        chromium = p.chromium.launch(executable_path=_chromium(), headless=True,
                                     args=["--no-sandbox"])
        yield chromium
        chromium.close()


# The notebook at `path`, found by its path rather than as the current widget: JupyterLab
# restores the last workspace (the other notebook of this module included) and may make
# that one current after the page loads.
_NOTEBOOK = """(path) => {
    const app = window.jupyterapp;
    if (!app) return null;
    for (const w of app.shell.widgets('main')) {
        if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
    }
    return null;
}"""


def _with_finder(js: str) -> str:
    return js.replace("FIND_NOTEBOOK", _NOTEBOOK)


_KERNEL_IDLE = _with_finder("""(path) => {
    const nb = (FIND_NOTEBOOK)(path);
    const kernel = nb && nb.sessionContext.session && nb.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle' && nb.content.widgets.length > 0;
}""")

# Done when the kernel is idle with every code cell run, or as soon as a cell shows an
# error (Run All stops there, so waiting longer would only hide it).
_ALL_RUN_OR_ERROR = _with_finder("""(path) => {
    const nb = (FIND_NOTEBOOK)(path);
    const cells = Array.from(nb.content.model.cells).filter(c => c.type === 'code');
    const failed = cells.some(c => {
        for (let i = 0; i < c.outputs.length; i++) {
            if (c.outputs.get(i).type === 'error') return true;
        }
        return false;
    });
    if (failed) return true;
    if (nb.sessionContext.session.kernel.status !== 'idle') return false;
    return cells.every(c => c.executionCount !== null);
}""")

# What the notebook looks like, for a failure message: kernel status, code cells not run.
_STATE = _with_finder("""(path) => {
    const nb = (FIND_NOTEBOOK)(path);
    if (!nb) return 'notebook not open; main area: ' +
        Array.from(window.jupyterapp.shell.widgets('main')).map(w => w.title.label).join(', ');
    const cells = Array.from(nb.content.model.cells).filter(c => c.type === 'code');
    const notRun = cells.map((c, i) => c.executionCount === null ? i : -1).filter(i => i >= 0);
    const errors = [];
    for (const c of cells) for (let i = 0; i < c.outputs.length; i++) {
        const o = c.outputs.get(i).toJSON();
        if (o.output_type === 'error') errors.push(`${o.ename}: ${o.evalue}`.slice(0, 300));
    }
    return `kernel ${nb.sessionContext.session.kernel.status}; code cells not run: ` +
        `${notRun}; errors: ${errors.join(' | ') || 'none'}`;
}""")


def _open_and_run_all(browser, base, token, path):
    """A new page on `path` in a workspace of its own (nothing restored from another
    page), with Run All started on that notebook."""
    page = browser.new_page()
    workspace = secrets.token_hex(4)
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{path}?reset&token={token}")
    page.wait_for_function(_KERNEL_IDLE, arg=path, timeout=SERVER_START_S * 1000)
    page.evaluate(_with_finder("""(path) => {
        const nb = (FIND_NOTEBOOK)(path);
        window.jupyterapp.shell.activateById(nb.id);
        return window.jupyterapp.commands.execute('notebook:run-all-cells');
    }"""), path)
    return page


def _wait_all_run(page, path):
    try:
        page.wait_for_function(_ALL_RUN_OR_ERROR, arg=path, timeout=RUN_ALL_S * 1000,
                               polling=1000)
    except PlaywrightTimeout:
        pytest.fail(f"Run All did not finish in {RUN_ALL_S} s: {page.evaluate(_STATE, path)}")
    state = page.evaluate(_STATE, path)
    assert state.endswith("code cells not run: ; errors: none"), state


@pytest.mark.slow
def test_untouched_lab_names_the_function_to_write(jupyterlab, browser):
    base, token = jupyterlab
    page = _open_and_run_all(browser, base, token, LAB01.notebook.name)
    error = page.locator(STDERR, has_text="NotImplementedError")
    error.first.wait_for(timeout=RUN_ALL_S * 1000)
    text = error.first.text_content()
    # Run All stops at the first check that calls an unwritten stub: the lab's first one.
    first = nbformat.read(LAB01.notebook, 4)
    stubs = [c.metadata["nbgrader"]["grade_id"] for c in first.cells
             if c.metadata.get("nbgrader", {}).get("solution")]
    assert f"`{stubs[0]}` is not written yet: replace `raise NotImplementedError()`" in text
    assert "Traceback" not in text and "---->" not in text, text
    assert error.count() == 1, error.all_text_contents()
    page.close()


@pytest.mark.slow
def test_solved_lab_shows_widgets_and_figures_without_errors(jupyterlab, browser):
    base, token = jupyterlab
    path = f"solved/{LAB01.notebook.name}"
    page = _open_and_run_all(browser, base, token, path)
    _wait_all_run(page, path)
    errors = [t for t in page.locator(STDERR).all_text_contents()
              if "Error" in t or "Traceback" in t]
    assert not errors, errors[:3]
    # tqdm.auto's bars as ipywidgets (a broken widget manager shows their repr as text)
    assert page.locator(".jp-OutputArea-output .widget-hprogress").count() >= 1
    outputs = "\n".join(page.locator(".jp-OutputArea-output").all_text_contents())
    assert "HBox(children=" not in outputs and "Loading widget" not in outputs
    images = page.locator(".jp-OutputArea-output.jp-RenderedImage img")
    assert images.count() >= 1
    assert all(images.nth(i).evaluate("img => img.naturalWidth > 0")
               for i in range(images.count()))
    page.close()

