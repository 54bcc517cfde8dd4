"""A real browser on the review app: headless Chromium (Debian `chromium` + `chromium-driver`,
driven by selenium) logs in, opens a call from the queue, plays it, marks checks with the
keyboard and the mouse, and the database holds the answers.

`CALLQA_REVIEW_SCREENSHOTS=docs/img` also saves review_queue.png and review_call.png there.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from review_data import make_result, write_call

from callqa.config import ReviewConfig, ServeConfig
from callqa.mlops.serve import create_app
from callqa.review.sinks import open_store
from callqa.review.web import review_router

pytestmark = pytest.mark.slow
PASSWORD = "correct horse"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoModel:
    def current_version(self):
        return None


@pytest.fixture
def server(tmp_path):
    """The app of `callqa serve` (review pages only) on a free port, in a thread."""
    import uvicorn

    cfg = ReviewConfig(
        db_url=f"sqlite:///{tmp_path / 'review.db'}",
        secret_file=tmp_path / "secret",
        figure_cache_dir=tmp_path / "fig",
    )
    store = open_store(cfg)
    store.add_user("ana", PASSWORD)
    rng = random.Random(3)
    for i in range(24):  # a queue worth a screenshot
        fail = tuple(c for c in ("closing", "dead_air", "forbidden_language") if rng.random() < 0.3)
        result = make_result(f"{i:04x}" * 4, p_greeting=rng.random(), fail=fail)
        audio = write_call(tmp_path / f"call{i}.wav")
        agent = f"agent-{i % 5:02d}"
        store.add_scored(
            result, "score", audio, agent=agent, critical_checks=["forbidden_language"]
        )
    app = create_app(NoModel(), ServeConfig(), routers=[review_router(store, cfg)])
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.skip("needs Debian's chromium and chromium-driver (make install adds them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1000",
    ):
        opts.add_argument(arg)  # fmt: skip
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _until(cond, timeout_s: float = 15):
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_login_play_and_mark_checks(server, browser):
    from selenium.webdriver.common.by import By

    base, store = server
    shots = os.environ.get("CALLQA_REVIEW_SCREENSHOTS")
    browser.get(f"{base}/review/")
    assert "/review/login" in browser.current_url
    browser.find_element(By.ID, "username").send_keys("ana")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    _until(lambda: browser.find_elements(By.CSS_SELECTOR, "a.call"))
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(shots) / "review_queue.png"))
    browser.find_elements(By.CSS_SELECTOR, "tr.crit a.call")[0].click()  # a call with failures
    sid = int(browser.current_url.rstrip("/").rsplit("/", 1)[1])
    body = browser.find_element(By.TAG_NAME, "body")
    # play/pause with the space bar: the audio (fetched by row id) advances
    _until(lambda: browser.execute_script("return document.getElementById('player').readyState"))
    body.send_keys(" ")
    _until(lambda: browser.execute_script("return document.getElementById('player').currentTime")
           > 0.3)  # fmt: skip
    body.send_keys(" ")
    assert browser.execute_script("return document.getElementById('player').paused")
    # keyboard: agree on the first check, disagree on the second (focus moves on by itself)
    body.send_keys("a")
    _until(lambda: len(store.latest_reviews(scored_call_id=sid)) == 1)
    body.send_keys("d")
    _until(lambda: len(store.latest_reviews(scored_call_id=sid)) == 2)
    # mouse: N/A with a comment on the fourth check
    row = browser.find_element(By.ID, "check-closing")
    row.find_element(By.NAME, "comment").send_keys("call cut off")
    row.find_element(By.CSS_SELECTOR, "button.na").click()
    _until(lambda: len(store.latest_reviews(scored_call_id=sid)) == 3)
    got = {
        r.check_id: (r.human_answer, r.comment) for r in store.latest_reviews(scored_call_id=sid)
    }
    assert got == {
        "greeting": ("agree", ""),
        "identity_verification": ("disagree", ""),
        "closing": ("na", "call cut off"),
    }
    assert all(r.reviewer == "ana" for r in store.latest_reviews(scored_call_id=sid))
    # figures were drawn from the stored audio and shown
    _until(
        lambda: browser.execute_script(
            "return [...document.querySelectorAll('.figwrap img')].every(i => i.naturalWidth > 0)"
        )
    )
    if shots:
        browser.set_window_size(1280, 2300)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(Path(shots) / "review_call.png"))
    # next call with `n`
    browser.find_element(By.TAG_NAME, "body").send_keys("n")
    _until(lambda: not browser.current_url.endswith(f"/calls/{sid}"))
