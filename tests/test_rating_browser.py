"""The rating study as a rater uses it, in real headless Chromium (Debian's chromium and chromium-driver, which
.ci/run installs) driven by Selenium: open the personal link, rate with the mouse and with the keyboard, reload
in the middle and resume, finish; a second rater cannot open the first one's videos; nothing on screen or in a
URL names a set; the page lays out for a laptop and for a tablet."""
from __future__ import annotations

import re
import shutil
import threading
import time

import pytest
import uvicorn
from sqlalchemy import func, select

from benchmarks.rating import db
from benchmarks.rating.app import create_app
from benchmarks.rating.config import load_study
from benchmarks.rating.study import init_study, open_study
from benchmarks.rating.synthetic import write_synthetic_study

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SETS = ("alpha_model", "beta_model", "real_clips")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rating-browser")
    config = load_study(str(write_synthetic_study(folder / "source")))
    tokens = init_study(config, folder / "study", log=lambda line: None)
    study = open_study(folder / "study")
    server = uvicorn.Server(uvicorn.Config(create_app(study), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start in 20 s"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", tokens, study
    server.should_exit = True
    thread.join(10)


@pytest.fixture()
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, condition, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s on {driver.current_url}")


def rated(driver) -> int:
    return int(re.search(r"(\d+) rated", driver.find_element("id", "rated").text).group(1))


def public_id(driver) -> str:
    return driver.current_url.rsplit("/", 1)[-1]


def rate_with_keyboard(driver, score: str = "4") -> None:
    body = driver.find_element("tag name", "body")
    before = driver.current_url
    for _ in driver.find_elements("css selector", ".criterion"):
        body.send_keys(score)
    body.send_keys("\n")
    wait_for(driver, lambda d: d.current_url != before)


def assert_blind(driver) -> None:
    page = driver.page_source
    for name in SETS + ("clips/", ".mp4", "instructions"):
        assert name not in page and name not in driver.current_url


def test_a_rater_rates_resumes_and_finishes_in_chromium(server, browser):
    base, tokens, study = server
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/r/{tokens['r1']}")
    wait_for(browser, lambda d: "/item/" in d.current_url)
    total = int(re.search(r"of (\d+)", browser.find_element(By.ID, "position").text).group(1))
    assert total == 13 and rated(browser) == 0
    assert_blind(browser)
    playing = wait_for(browser, lambda d: d.execute_script(
        "const v = document.getElementById('clip'); return v.readyState >= 2 && v.currentTime > 0 && v.loop"), 15)
    assert playing, "the blinded H.264 video does not play in Chromium"

    # Laptop: video and form side by side; tablet (768 px): stacked
    video, form = browser.find_element(By.ID, "clip"), browser.find_element(By.ID, "rating")
    assert form.location["x"] > video.location["x"] + video.size["width"] - 5
    browser.set_window_size(768, 1024)
    video, form = browser.find_element(By.ID, "clip"), browser.find_element(By.ID, "rating")
    assert form.location["y"] >= video.location["y"] + video.size["height"] - 5
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.set_window_size(1280, 900)

    # Mouse: a button per criterion, a comment, then "Save and next"
    first = public_id(browser)
    for row in browser.find_elements(By.CSS_SELECTOR, ".criterion"):
        row.find_elements(By.CSS_SELECTOR, ".scale span")[2].click()  # score 3
    browser.find_element(By.ID, "comment").send_keys("instrument tip blurs")
    browser.find_element(By.ID, "save").click()
    wait_for(browser, lambda d: public_id(d) != first)
    assert rated(browser) == 1

    # Keyboard: 4 seven times, then Enter
    rate_with_keyboard(browser, "4")
    assert rated(browser) == 2
    third = public_id(browser)

    # Reload in the middle, and open the link again later: both resume at the first unrated video
    browser.refresh()
    assert public_id(browser) == third and rated(browser) == 2
    browser.get(f"{base}/r/{tokens['r1']}")
    wait_for(browser, lambda d: "/item/" in d.current_url)
    assert public_id(browser) == third

    # Going back shows the saved rating; saving it again keeps a revision
    browser.get(f"{base}/item/{first}")
    assert "revision 1" in browser.find_element(By.ID, "saved").text
    assert browser.find_element(By.ID, "comment").get_attribute("value") == "instrument tip blurs"
    checked = browser.find_elements(By.CSS_SELECTOR, "input[type=radio]:checked")
    assert [c.get_attribute("value") for c in checked] == ["3"] * 7
    browser.get(f"{base}/rate")
    for _ in range(total - 2):
        rate_with_keyboard(browser, "5")
        assert_blind(browser)
    assert "/finish" in browser.current_url
    assert "all 13 videos are rated" in browser.find_element(By.ID, "finish").text
    with db.sessions(study.engine)() as session:
        count = session.scalar(select(func.count(db.Rating.id)).join(db.Assignment).join(db.Rater)
                               .where(db.Rater.key == "r1"))
        assert count == 13
        assert session.scalar(select(db.Rater.finished_at).where(db.Rater.key == "r1")) is not None

    # A second rater, in the same browser, cannot open the first rater's videos
    browser.get(f"{base}/r/{tokens['r2']}")
    wait_for(browser, lambda d: "/item/" in d.current_url)
    own = public_id(browser)
    browser.get(f"{base}/item/{first}")
    assert "not available" in browser.find_element(By.TAG_NAME, "h1").text
    browser.get(f"{base}/video/{first}")  # a 404 with an empty body: Chromium shows nothing
    assert browser.find_elements(By.TAG_NAME, "video") == []
    browser.get(f"{base}/video/{own}")  # Chromium's media viewer wraps a playable video in a <video>
    assert len(browser.find_elements(By.TAG_NAME, "video")) == 1

    # ... and rates their own videos
    browser.get(f"{base}/rate")
    rate_with_keyboard(browser, "2")
    rate_with_keyboard(browser, "3")
    assert rated(browser) == 2
    with db.sessions(study.engine)() as session:
        scores = session.scalars(select(db.Score.value).join(db.Rating).join(db.Assignment).join(db.Rater)
                                 .where(db.Rater.key == "r2")).all()
        assert sorted(scores) == [2] * 7 + [3] * 7
