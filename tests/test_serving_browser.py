"""The chat page in headless Chromium (Debian `chromium` + `chromium-driver`; `make browser`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving_support import RunningServer

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,900"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromedriver are missing: run `make browser` (Debian packages).")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="twin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_chat_page_streams_an_answer_with_its_sources(
    serving_server: RunningServer, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(serving_server.url + "/")
    wait = WebDriverWait(browser, 120)
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#twin option")) == 4)
    Select(browser.find_element(By.ID, "twin")).select_by_value("priya-raman")
    browser.find_element(By.ID, "question").send_keys(
        "How do I stop generated cave levels from leaving sealed-off pockets the player can't reach?")
    browser.find_element(By.ID, "send").click()
    turn = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#log .turn")))
    wait.until(lambda driver: turn.get_attribute("data-state") in ("done", "error"))
    assert turn.get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text
    assert turn.find_element(By.CSS_SELECTOR, ".answer").text.strip()
    sources = turn.find_elements(By.CSS_SELECTOR, ".sources li")
    assert sources
    links = [source.find_element(By.TAG_NAME, "a").get_attribute("href") for source in sources]
    assert links[0] == "https://medium.com/@priyaraman/cellular-automata-caves-from-noise"
    assert all("Priya Raman" in source.text for source in sources)
    assert browser.find_element(By.ID, "status").text == ""
    # who answers: the twin picked, and the model (no fine-tuned champion in this store)
    assert turn.get_attribute("data-twin") == "priya-raman"
    assert turn.find_element(By.CSS_SELECTOR, ".who").text == (
        "Answered by Priya Raman (priya-raman), with the base model SmolLM2-135M-Instruct: "
        "this twin has no fine-tuned champion yet")

    # another twin picked from the list answers the next question, and says so
    Select(browser.find_element(By.ID, "twin")).select_by_visible_text("Maya Lindqvist")
    question = browser.find_element(By.ID, "question")
    question.clear()
    question.send_keys("How do I keep tables from bloating?")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#log .turn")) == 2)
    second = browser.find_elements(By.CSS_SELECTOR, "#log .turn")[0]  # newest first
    wait.until(lambda driver: second.get_attribute("data-state") in ("done", "error"))
    assert second.get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text
    assert second.get_attribute("data-twin") == "maya-lindqvist"
    assert second.find_element(By.CSS_SELECTOR, ".who").text.startswith("Answered by Maya Lindqvist (maya-lindqvist)")
    # a source whose URL is not http(s) is no link, and stored text is never markup
    hostile = browser.execute_script("""
        const list = document.createElement("ol");
        showSources(list, [{number: 1, url: "javascript:alert(1)", title: "<b>t</b>", author: "a",
                            category: "post", snippet: "<img src=x onerror=alert(1)>", similarity: 0.5}]);
        return [list.querySelectorAll("a").length, list.querySelectorAll("img, b").length, list.textContent];""")
    assert hostile[0] == 0 and hostile[1] == 0 and "<img src=x" in hostile[2]
