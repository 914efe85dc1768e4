"""Regenerate docs/serve-page.png: the `ret2vqa serve` page answering a demo question, with the TINY models.

    python docs/serve_screenshot.py [--out docs/serve-page.png]

Indexes the bundled demo knowledge base with configs/tiny.yaml into a temporary store,
serves it on a free loopback port, and drives Debian's Chromium (selenium) the way a user
would: pick the photo, type the question, press Enter, wait for the answer and sources.
The page itself labels the models as tiny random ones (answers are meaningless).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "serve-page.png"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # no telemetry from Selenium Manager

    import shutil

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from rag.config import PipelineConfig, default_config_path
    from rag.demo import DEMO_DIR, KB_FILE
    from rag.ingest.indexer import build_index
    from rag.pipeline import Pipeline
    from rag.serve.app import create_app

    store = Path(tempfile.mkdtemp(prefix="ret2vqa-shot-")) / "store"
    cfg = PipelineConfig.from_yaml(default_config_path("tiny")).override({
        "store.path": str(store), "store.collection": "demo", "ingest.image_root": str(DEMO_DIR)})
    build_index(cfg, KB_FILE, "jsonl", show_progress=False)
    with Pipeline.from_config(cfg) as pipeline:
        server = uvicorn.Server(uvicorn.Config(create_app(pipeline), host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=900,1650",
                     "--hide-scrollbars"):
            options.add_argument(flag)
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(url)
            driver.find_element(By.ID, "image").send_keys(str(DEMO_DIR / "images" / "rocket.jpg"))
            question = driver.find_element(By.ID, "question")
            question.send_keys("Which satellite did this rocket launch in February 2015?")
            question.send_keys(Keys.ENTER)
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: d.find_element(By.ID, "answer").text.strip())
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#passages img[src^='blob:']")) >= 1)
            time.sleep(0.5)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
            server.should_exit = True
            thread.join(30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
