"""vp2p.course.studio: the edit studio, driven from Python on the tiny model, and served by Voilà to headless Chromium
on the toy model (the browser test: change the target prompt, press Edit, read the edited frames back from the
page and ask the toy evaluator what colour the circle is).
"""

import base64
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import smooth_video
from vp2p import course
from vp2p.course import studio
from vp2p.workflow import Settings

SETTINGS = Settings(tune_steps=2, tune_lr=1e-4, method="fast", num_steps=3, blend_start=0.0)
SCENE = course.SCENE
BLUE = SCENE.replace(color="blue").caption
ROOT = Path(__file__).resolve().parents[1]


def decode_strip(data_url: str, frames: int) -> np.ndarray:
    """A studio video (one PNG of the frames side by side) back to uint8 (F, H, W, 3)."""
    strip = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))
    return np.stack(np.split(strip, frames, axis=1))


def image_src(page_html: str, role: str) -> str:
    start = page_html.index(f"data-role='{role}'")
    src = page_html.index("src='", start) + len("src='")
    return page_html[src: page_html.index("'", src)]


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    from vp2p import load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    root = tmp_path_factory.mktemp("studio")
    app = studio.Studio(pipe, SETTINGS, root=root, scenes={SCENE.caption: SCENE}, progress=False)
    app.app()
    app.select(SCENE.caption)
    return app


def test_selecting_a_clip_prepares_it_into_its_work_folder(app):
    assert app.run is not None and app.run.inversion.prompt == SCENE.caption
    assert app.clip.work_dir == app.root / course.work_dir(app.pipe, scene=SCENE, root=".").name
    assert (app.clip.work_dir / "tuning.json").exists()
    assert app.controls["blend_source"].value == app.controls["blend_target"].value == "circle"
    page = app.videos.value
    shown = decode_strip(image_src(page, "reconstruction"), course.NUM_FRAMES)
    assert np.array_equal(shown, app.run.inversion.reconstruction)  # lossless: what the page shows is the video
    assert "data-role='edit'" not in page and not app.controls["run"].disabled


def test_edit_button_shows_the_edit_and_its_attention(app):
    app.controls["target"].value = BLUE
    app.controls["run"].click()
    assert app.status.value.startswith("edited in"), app.status.value
    result = app.last_edit
    assert result.prompts == [SCENE.caption, BLUE] and result.blend_masks is not None
    page = app.videos.value
    assert f"data-prompt='{BLUE}'" in page
    assert np.array_equal(decode_strip(image_src(page, "edit"), course.NUM_FRAMES), app.edited_frames())
    assert "the toy evaluator reads:" in page  # a toy scene: the evaluator's reading in the caption
    panel = app.attention
    assert panel.edit is result and panel.image.value[:4] == b"\x89PNG"
    assert app.attention_box.children[0].children[-1] is panel.image
    panel.controls["step"].value = 0  # the step slider redraws the attention figure in the app
    assert torch.allclose(panel.data, result.controller.cross_maps(step=0, branch=1, resolution=16))


def test_errors_go_to_the_status_line_never_a_traceback(app):
    edited = app.last_edit
    app.controls["blend_target"].value = "square"  # not in the target prompt
    app.controls["run"].click()
    assert "square" in app.status.value and "color:#b00020" in app.status.value and app.last_edit is edited
    app.controls["blend_target"].value = "circle"
    app.controls["source"].value = "a red square bouncing on the grass"
    app.controls["run"].click()
    assert "Prepare clip" in app.status.value and app.last_edit is edited
    app.controls["source"].value = SCENE.caption
    app.controls["target"].value = " "
    app.controls["run"].click()
    assert "target prompt" in app.status.value
    app.controls["target"].value = BLUE
    assert not app.controls["run"].disabled and not app.controls["prepare"].disabled


def test_an_uploaded_clip_is_described_then_prepared(app, tmp_path):
    from vp2p.io.video import write_video

    clip = tmp_path / "my clip.gif"
    write_video(clip, smooth_video(course.NUM_FRAMES), fps=4)
    app._on_upload({"new": ({"name": clip.name, "content": memoryview(clip.read_bytes())},)})
    assert app.clip.name == "upload: my_clip.gif" and app.run is None and app.controls["run"].disabled
    assert "describe your clip" in app.status.value and app.controls["source"].value == ""
    app.controls["prepare"].click()  # no source prompt yet
    assert "source prompt" in app.status.value and app.run is None
    app.controls["source"].value = app.controls["target"].value = "a red circle"
    app.controls["prepare"].click()
    assert app.run is not None and app.clip.work_dir == app.root / f"{Path(app.pipe.name).name}-my_clip"
    assert app.clip.frames.shape == (course.NUM_FRAMES, 32, 32, 3) and app.clip.scene is None
    app.select(SCENE.caption)  # back to the toy clip: from the cache
    assert app.run.inversion.prompt == SCENE.caption


def test_work_root_comes_from_the_argument_the_environment_or_the_course(monkeypatch, tmp_path):
    monkeypatch.setenv(studio.WORK_ENV, str(tmp_path / "env"))
    assert studio.work_root() == tmp_path / "env" and studio.work_root(tmp_path) == tmp_path
    monkeypatch.delenv(studio.WORK_ENV)
    assert studio.work_root() == course.runs_dir() / "notebooks"


def test_shown_frames_are_downscaled_only_when_large():
    small = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    assert studio.shown_frames(small) is small
    assert studio.shown_frames(np.zeros((2, 512, 256, 3), dtype=np.uint8)).shape == (2, 192, 96, 3)


# -- in a real browser ------------------------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chromium(profile: Path):
    """Headless Debian Chromium through its chromedriver (no browser download); skip, saying why, if it fails."""
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists() and not shutil.which(Path(binary).name):
            pytest.skip(f"{binary} is missing: apt-get install -y chromium chromium-driver")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.page_load_strategy = "none"  # Voilà streams the page while the notebook runs: wait for elements instead
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER if Path(CHROMEDRIVER).exists()
                                      else shutil.which("chromedriver"))
    try:
        return webdriver.Chrome(options=options, service=service)
    except Exception as error:  # e.g. a machine without the libraries Chromium needs
        pytest.skip(f"headless Chromium could not start: {type(error).__name__}: {error}")


def start_voila(port: int, work: Path, log: Path) -> subprocess.Popen:
    pytest.importorskip("voila", reason="voila is not installed: pip install -e '.[dev]'")
    env = {**os.environ, studio.WORK_ENV: str(work), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "voila", str(ROOT / "notebooks" / "studio.ipynb"), f"--port={port}",
               "--no-browser", "--Voila.ip=127.0.0.1", "--show_tracebacks=True"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: the kernel stops with it


def wait_for_port(port: int, server: subprocess.Popen, log: Path, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"voila exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"voila did not listen on port {port} within {seconds} s:\n{log.read_text()[-3000:]}")


def screenshot_path(tmp_path: Path) -> Path:
    """figures/studio.png only when asked (VP2P_WRITE_FIGURES=1): tests never rewrite tracked files."""
    return ROOT / "figures" / "studio.png" if os.environ.get("VP2P_WRITE_FIGURES") == "1" else tmp_path / "studio.png"


def save_full_page(driver, path: Path):
    """A screenshot of the whole page, not only the window (headless windows cannot outgrow the screen)."""
    height = driver.execute_script(  # Voilà scrolls an inner element, not the document: take the tallest
        "return Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": False})
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


def test_studio_in_a_browser_edits_red_to_blue(tmp_path):
    """Voilà serves notebooks/studio.ipynb; headless Chromium types the blue prompt and presses Edit; the edited
    frames, read back from the page, are blue to the toy evaluator. The clip is prepared (tuned and inverted) here,
    into the folder the studio reads ($VP2P_STUDIO_WORK), so that in the browser only the edit runs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from vp2p import load_pipeline
    from vp2p.toy import evaluator
    from vp2p.workflow import prepare

    started = time.monotonic()
    work, port, log = tmp_path / "work", free_port(), tmp_path / "voila.log"
    driver = start_chromium(tmp_path / "chromium-profile")
    server = start_voila(port, work, log)  # it idles until the page is asked for, while we prepare
    try:
        pipe = load_pipeline("toy")
        clip = studio.toy_clip(pipe, SCENE, work)
        prepare(pipe, clip.frames, clip.source, course.settings(pipe), work_dir=clip.work_dir, progress=False)
        prepared = time.monotonic() - started
        wait_for_port(port, server, log)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 600, poll_frequency=0.5)  # generous: a shared CPU can be slow
        reconstruction = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "img[data-role='reconstruction']"))
        before = decode_strip(reconstruction[0].get_attribute("src"), course.NUM_FRAMES)
        target = driver.find_element(By.CSS_SELECTOR, ".vp2p-target input")
        target.send_keys(Keys.CONTROL, "a")
        target.send_keys(BLUE, Keys.TAB)
        wait.until(lambda d: target.get_attribute("value") == BLUE)
        driver.find_element(By.CSS_SELECTOR, "button.vp2p-edit").click()
        edited = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"img[data-role='edit'][data-prompt='{BLUE}']"))
        after = decode_strip(edited[0].get_attribute("src"), course.NUM_FRAMES)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".vp2p-studio img:not(.vp2p-video)"))  # attention
        save_full_page(driver, screenshot_path(tmp_path))
        status = driver.find_element(By.CSS_SELECTOR, ".vp2p-status").text
    finally:
        driver.quit()
        os.killpg(server.pid, signal.SIGTERM)  # voila and its kernel (our own process group)
        server.wait(timeout=30)
    assert status.startswith("edited in"), status
    assert after.shape == before.shape == (course.NUM_FRAMES, 64, 64, 3)
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 2  # the edited image changed
    assert evaluator.read_video(before).color == "red"
    assert evaluator.read_video(after).color == "blue"  # the evaluator reads the new colour in the page's pixels
    total = time.monotonic() - started
    print(f"browser test: prepared in {prepared:.0f} s, {total:.0f} s in all")
