"""The web page of ``ret2vqa serve`` in a real browser: Debian's Chromium driven by Selenium.

Loads the page from a real uvicorn server (tiny models), picks a photo, types a question,
asks, and waits for the answer and at least one source (with its score) to be rendered;
a screenshot goes to the test's tmp dir. Skipped, saying how to install them, when
Chromium, its driver or Selenium are missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil

import pytest

from rag.demo import DEMO_DIR
from rag.serve.config import ServeConfig

from test_serve import running_server

INSTALL = ("install a browser to run it: `apt-get install -y chromium chromium-driver` (Debian/Ubuntu) and "
           "`pip install -e '.[test]'` (selenium)")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-extensions", "--window-size=1100,1400"]


def _browser_paths() -> tuple[str, str]:
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(f"no Chromium / chromedriver on PATH; {INSTALL}")
    return binary, driver


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is not installed; {INSTALL}")
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _browser_paths()
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager stays quiet (the driver is given anyway)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_answers_a_question_about_an_uploaded_photo(browser, tiny_pipeline, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(tiny_pipeline, ServeConfig()) as url:
        browser.get(url + "/")
        assert "ret2vqa" in browser.title
        browser.find_element(By.ID, "image").send_keys(str(DEMO_DIR / "images" / "rocket.jpg"))
        question = browser.find_element(By.ID, "question")
        question.send_keys("Which satellite did this rocket launch in February 2015?")
        question.send_keys(Keys.ENTER)  # keyboard: Enter in the question field asks
        wait = WebDriverWait(browser, 60)
        wait.until(ec.visibility_of_element_located((By.ID, "result")))
        wait.until(lambda d: d.find_element(By.ID, "answer").text.strip() != "")
        sources = browser.find_elements(By.CSS_SELECTOR, "#passages li.source")
        assert len(sources) >= 1
        assert "score" in sources[0].text
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#passages img[src^='blob:']"))  # a KB image shown
        timings = browser.find_element(By.ID, "timings").text
        assert "generate" in timings and "encode" in timings
        assert "Answered in" in browser.find_element(By.ID, "status").text
        assert "Tiny random models" in browser.find_element(By.TAG_NAME, "header").text  # labelled as such
        errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors  # nothing blocked, nothing fetched from elsewhere
        shot = tmp_path / "serve-page.png"  # the README screenshot is made the same way (docs/serve.md)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
