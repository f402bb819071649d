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
from playwright.sync_api import sync_playwright

from autograder.build import solved_notebook
from autograder.labs import all_labs

LAB01 = all_labs()[0]
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
SERVER_START_S = 120
RUN_ALL_S = 1500  # a solved lab: about a minute idle, 10 minutes measured at load 17


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


_KERNEL_IDLE = """() => {
    const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = nb && nb.sessionContext && nb.sessionContext.session &&
        nb.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle' && !!nb.content && nb.content.widgets.length > 0;
}"""

_ALL_RUN = """() => {
    const nb = window.jupyterapp.shell.currentWidget;
    const kernel = nb.sessionContext.session.kernel;
    if (kernel.status !== 'idle') return false;
    const cells = Array.from(nb.content.model.cells);
    return cells.filter(c => c.type === 'code').every(c => c.executionCount !== null);
}"""


def _open_and_run_all(browser, base, token, path):
    page = browser.new_page()
    page.goto(f"{base}/lab/tree/{path}?token={token}")
    page.wait_for_function(_KERNEL_IDLE, timeout=SERVER_START_S * 1000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    return page


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
    page = _open_and_run_all(browser, base, token, f"solved/{LAB01.notebook.name}")
    page.wait_for_function(_ALL_RUN, timeout=RUN_ALL_S * 1000, polling=1000)
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

