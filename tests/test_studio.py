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


def image_src(page_html: str, role: str, kind: str = "vp2p-video") -> str:
    """The frames strip of a role (``kind`` vp2p-video), or the GIF that plays it beside the strip (vp2p-gif)."""
    start = page_html.index(f"class='{kind}' data-role='{role}'")
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
    assert len(list(app.clip.work_dir.glob("tuned-*.safetensors"))) == 1  # the tuning, cached under its key
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


def test_the_ab_tab_pins_an_edit_as_a_and_compares_the_next_edits(app):
    app.controls["target"].value = BLUE
    app.controls["run"].click()
    assert not app.pin.disabled and "pin this edit as A" in app.ab_view.children[0].value
    assert app.tabs.titles == ("videos", "attention", "A/B")
    app.pin.click()
    assert app.pinned is app.last_edit and np.array_equal(app.ab_difference, np.zeros(course.NUM_FRAMES))
    clips, figure = app.ab_view.children
    assert [c.children[1].format for c in clips.children] == ["gif", "gif"] and figure.value[:4] == b"\x89PNG"
    app.controls["target"].value = SCENE.replace(color="green").caption
    app.controls["run"].click()
    assert app.pinned is not app.last_edit and app.ab_difference.mean() > 0  # B: the new edit, beside A
    app.select(SCENE.caption)  # a new preparation forgets A
    assert app.pinned is None and app.pin.disabled


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
    # uploads are kept under their name and a hash of their content (two uploads of one name never collide)
    assert app.run is not None and app.clip.work_dir.parent == app.root
    assert app.clip.work_dir.name.startswith(f"{Path(app.pipe.name).name}-my_clip-")
    assert app.clip.frames.shape == (course.NUM_FRAMES, 32, 32, 3) and app.clip.scene is None
    app.select(SCENE.caption)  # back to the toy clip: from the cache
    assert app.run.inversion.prompt == SCENE.caption


def test_work_root_comes_from_the_argument_the_environment_or_the_course(monkeypatch, tmp_path):
    monkeypatch.setenv(studio.WORK_ENV, str(tmp_path / "env"))
    assert studio.work_root() == tmp_path / "env" and studio.work_root(tmp_path) == tmp_path
    monkeypatch.delenv(studio.WORK_ENV)
    assert studio.work_root() == course.runs_dir() / "notebooks"


def test_the_videos_also_play_enlarged_by_nearest_neighbour():
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    big = studio.enlarged(frames)
    assert big.shape == (3, 128, 128, 3) and np.array_equal(big[:, ::2, ::2], frames)  # each pixel a 2×2 block
    assert np.array_equal(big[:, 1::2, 1::2], frames)
    assert studio.enlarged(np.zeros((1, 192, 192, 3), np.uint8)).shape == (1, 192, 192, 3)  # large enough already
    page = studio.video_html(frames, "edit", "edit")
    gif = Image.open(io.BytesIO(base64.b64decode(image_src(page, "edit", "vp2p-gif").split(",", 1)[1])))
    assert gif.format == "GIF" and gif.size == (128, 128) and gif.n_frames == 3 and gif.info["loop"] == 0
    assert "image-rendering:pixelated" in page


def test_shown_frames_are_downscaled_only_when_large():
    small = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    assert studio.shown_frames(small) is small
    assert studio.shown_frames(np.zeros((2, 512, 256, 3), dtype=np.uint8)).shape == (2, 192, 96, 3)


# -- in a real browser ------------------------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1366,768"]  # a classroom projector


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
    """figures/studio.png (the first screen at 1366×768) only when asked (VP2P_WRITE_FIGURES=1): tests never
    rewrite tracked files."""
    return ROOT / "figures" / "studio.png" if os.environ.get("VP2P_WRITE_FIGURES") == "1" else tmp_path / "studio.png"


# What the projected screen must show, measured in the page: where the parts are, the smallest text, the videos.
LAYOUT_JS = """
const studio = document.querySelector('.vp2p-studio');
const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right,
                                                                    bottom: r.bottom}; };
const small = [];
for (const e of studio.querySelectorAll('*')) {
  const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  const style = getComputedStyle(e);
  if (own && e.offsetParent !== null && style.visibility !== 'hidden' && parseFloat(style.fontSize) < 14)
    small.push(e.tagName + ' ' + style.fontSize + ' ' + e.textContent.trim().slice(0, 30));
}
const gifs = Array.from(studio.querySelectorAll('img.vp2p-gif'), g => ({
  role: g.dataset.role, natural: g.naturalWidth, shown: g.getBoundingClientRect().width,
  rendering: getComputedStyle(g).imageRendering}));
return {studio: box(studio), edit: box(document.querySelector('button.vp2p-edit')),
        target: box(document.querySelector('.vp2p-target')),
        reconstruction: box(document.querySelector("img.vp2p-video[data-role='reconstruction']")),
        edited: box(document.querySelector("img.vp2p-gif[data-role='edit']")),
        small: small, gifs: gifs, viewport: [window.innerWidth, window.innerHeight]};
"""


def waiting_class():
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    class Waiting(WebDriverWait):
        """A wait that, when it times out, says what the page showed (its status line and text)."""

        def until(self, method, message=""):
            try:
                return super().until(method, message)
            except TimeoutException:
                page = self._driver.execute_script("return document.body ? document.body.innerText : ''")
                pytest.fail(f"the page did not get there in time; it shows:\n{page[:2000]}")

    return Waiting


def test_studio_in_a_browser_edits_red_to_blue(tmp_path):
    """Voilà serves notebooks/studio.ipynb; headless Chromium types the blue prompt and presses Edit; the edited
    frames, read back from the page, are blue to the toy evaluator. The clip is prepared (tuned and inverted) here,
    into the folder the studio reads ($VP2P_STUDIO_WORK), so that in the browser only the edit runs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from vp2p import load_pipeline
    from vp2p.toy import evaluator
    from vp2p.workflow import prepare

    Waiting = waiting_class()
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
        wait = Waiting(driver, 300, poll_frequency=0.5)  # generous: a shared CPU can be slow
        reconstruction = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "img.vp2p-video[data-role='reconstruction']"))
        before = decode_strip(reconstruction[0].get_attribute("src"), course.NUM_FRAMES)
        wait.until(lambda d: not d.find_element(By.CSS_SELECTOR, "button.vp2p-edit").get_attribute("disabled"))

        def type_into(selector, label, text):
            """Type into a field and wait until the kernel has the value (the studio says it in its status line):
            a click sent earlier would overtake the field's update, which ipywidgets holds back while the kernel
            is busy."""
            field = driver.find_element(By.CSS_SELECTOR, f"{selector} input")
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(text, Keys.TAB)
            wait.until(lambda d: status_line() == f"{label}: '{text}' — press Edit")

        def status_line():
            return driver.find_element(By.CSS_SELECTOR, ".vp2p-status").text

        # a class's first mistake: a blend word that is not in the target prompt
        type_into(".vp2p-target", "target prompt", BLUE)
        type_into(".vp2p-blend-target", "blend (target)", "square")
        typed = status_line()  # "blend (target): 'square' — press Edit": it names the word too, so wait for a new line
        driver.find_element(By.CSS_SELECTOR, "button.vp2p-edit").click()
        wait.until(lambda d: status_line() != typed and "square" in status_line())
        mistake = status_line()
        type_into(".vp2p-blend-target", "blend (target)", "circle")
        driver.find_element(By.CSS_SELECTOR, "button.vp2p-edit").click()
        edited = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR,
                                                      f"img.vp2p-video[data-role='edit'][data-prompt='{BLUE}']"))
        after = decode_strip(edited[0].get_attribute("src"), course.NUM_FRAMES)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".vp2p-studio img:not(.vp2p-video):not(.vp2p-gif)"))
        wait.until(lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('img.vp2p-gif')).every(g => g.complete)"))
        layout = driver.execute_script(LAYOUT_JS)
        driver.save_screenshot(str(screenshot_path(tmp_path)))  # the first screen, as projected
        status = status_line()
    finally:
        driver.quit()
        os.killpg(server.pid, signal.SIGTERM)  # voila and its kernel (our own process group)
        server.wait(timeout=30)
    assert mistake == ("blend word 'square' is not in the prompt 'a blue circle bouncing on the grass'; its words are "
                       "['a', 'blue', 'circle', 'bouncing', 'on', 'the', 'grass']. Pick a word of that prompt (or "
                       "fix the spelling)."), mistake
    assert status.startswith("edited in"), status
    check_projected_layout(layout)
    assert after.shape == before.shape == (course.NUM_FRAMES, 64, 64, 3)
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 2  # the edited image changed
    assert evaluator.read_video(before).color == "red"
    assert evaluator.read_video(after).color == "blue"  # the evaluator reads the new colour in the page's pixels
    total = time.monotonic() - started
    print(f"browser test: prepared in {prepared:.0f} s, {total:.0f} s in all")


def check_projected_layout(layout):
    """At 1366×768: the app starts near the top (the prose is folded away), the controls and the videos side by
    side with Edit and the edited video on the first screen (the page's height: the window less the browser's own), no text under 14 px, and each video also playing as
    a GIF enlarged from 64 px with crisp (nearest-neighbour) pixels."""
    width, height = layout["viewport"]
    assert (width, height) == (1366, 768) or width >= 1300, layout["viewport"]
    assert layout["studio"]["top"] < 100, layout["studio"]  # no screen of prose or developer notes above it
    for part in ("edit", "target", "reconstruction", "edited"):
        assert layout[part]["bottom"] <= height, (part, layout[part])  # on the first screen, no scrolling
    assert layout["target"]["right"] <= layout["reconstruction"]["left"], layout  # side by side
    assert layout["small"] == [], layout["small"][:10]
    roles = {g["role"] for g in layout["gifs"]}
    assert roles == {"input", "reconstruction", "edit"}, layout["gifs"]
    for gif in layout["gifs"]:
        assert gif["natural"] >= 2 * 64 and gif["shown"] >= 2 * 64 and gif["rendering"] in ("pixelated",
                                                                                              "crisp-edges"), gif
