"""`/docs` in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`), driven by Selenium, against real gunicorn with several workers.

Swagger UI must render every operation of the document, load nothing from
another origin, and a "Try it out" of discover, authorized with a bearer token,
must show the `202` the server answered. Every wait is bounded; the page as it
was last is saved as `docs.png` in the test's tmp_path. Without Chromium the test
fails, saying what to install: CI installs it (`.ci/run`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.server import GunicornServer

WAIT = 15.0  # seconds any one step may take
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"


def _executable(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{' or '.join(names)} not found: the browser test needs `{INSTALL}`")


@contextmanager
def chromium(screenshot: Path) -> Iterator[WebDriver]:
    """Headless Chromium, the driver and browser named explicitly so that Selenium never
    tries to download either; what it showed last is saved to `screenshot`."""
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium", "chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,2000")
    driver = webdriver.Chrome(options=options, service=Service(_executable("chromedriver")))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(screenshot))
        driver.quit()


def operations(document: dict[str, Any]) -> list[str]:
    """`METHOD path` of every operation in the document."""
    return sorted(
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    )


def rendered_operations(driver: WebDriver) -> list[str]:
    """`METHOD path` of every operation block Swagger UI shows."""
    blocks = driver.find_elements(By.CSS_SELECTOR, ".opblock")
    return sorted(
        f"{b.find_element(By.CSS_SELECTOR, '.opblock-summary-method').text} "
        f"{b.find_element(By.CSS_SELECTOR, '.opblock-summary-path').get_attribute('data-path')}"
        for b in blocks
    )


def first(
    within: WebElement | WebDriver, css: str, text: bool = False
) -> WebElement | Literal[False]:
    """The first element `css` names (that shows some text, if `text`), else False:
    a condition to wait for."""
    found = within.find_elements(By.CSS_SELECTOR, css)
    return next((e for e in found if e.text or not text), False)


def click(driver: WebDriver, within: WebElement | WebDriver, css: str) -> None:
    """Click the element `css` names once it is clickable."""
    element = WebDriverWait(driver, WAIT).until(lambda _: first(within, css))
    WebDriverWait(driver, WAIT).until(ec.element_to_be_clickable(element)).click()


def authorize(driver: WebDriver, token: str) -> None:
    """Swagger UI's Authorize dialog: the bearer token in, then closed."""
    click(driver, driver, ".auth-wrapper .authorize")
    field = WebDriverWait(driver, WAIT).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".auth-container input"))
    )
    field.send_keys(token)
    click(driver, driver, ".auth-btn-wrapper .authorize")
    click(driver, driver, ".auth-btn-wrapper .btn-done")


def status_shown(driver: WebDriver, block: WebElement) -> str:
    """The status code of the server's answer in the operation's live response."""
    css = ".live-responses-table tr.response .response-col_status"
    return WebDriverWait(driver, WAIT).until(lambda _: first(block, css, text=True)).text.strip()


def test_docs_render_every_operation_and_try_out_discover(
    server: GunicornServer, tmp_path: Path
) -> None:
    """Swagger UI lists every operation of /openapi.json, loads only this server's files,
    and "Try it out" of discover with a bearer token shows the server's 202."""
    started = time.monotonic()
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    expected = operations(document)
    with chromium(tmp_path / "docs.png") as browser:
        browser.get(f"{server.url}/docs")
        WebDriverWait(browser, WAIT).until(
            lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected)
        )
        assert expected == rendered_operations(browser)

        authorize(browser, server.token("swagger"))
        discover = browser.find_element(By.ID, "operations-scans-discover")
        click(browser, discover, ".opblock-summary-control")
        click(browser, discover, ".try-out__btn")
        click(browser, discover, ".execute")
        assert "202" == status_shown(browser, discover)

        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        pages = [browser.current_url, *loaded]
    origin = urlsplit(server.url).netloc
    assert [] == [url for url in pages if urlsplit(url).netloc != origin]
    print(f"\ndocs browser: {len(expected)} operations, {time.monotonic() - started:.1f} s")
