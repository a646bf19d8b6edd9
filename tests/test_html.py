"""report.html in a real browser: Debian's chromium, driven through selenium and chromedriver.

The page must work offline (file:// URL, the browser's network emulated off, no http(s) asset in
the HTML), draw every chart, log no JavaScript error, and toggle a server and a family from the
legend and the family buttons. Where no browser is installed the tests skip, naming the install
command. No browser is downloaded: only the system's /usr/bin/chromium is used.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from bench.report import build as report

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_small"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install chromium chromium-driver"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason=f"no headless browser here (chromium and chromedriver): {INSTALL}")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("html") / "run_small"
    shutil.copytree(FIXTURE, run_dir)
    report.build_report(run_dir)
    return run_dir / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(90)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and the browser it started


@pytest.fixture(scope="module")
def loaded(browser, page):
    """The page opened from file:// with the browser's network switched off."""
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    browser.get(page.as_uri())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # plotly draws after load: wait for every chart
        drawn = browser.execute_script(
            "return [document.querySelectorAll('div.chart .js-plotly-plot').length,"
            " document.querySelectorAll('div.chart .js-plotly-plot .main-svg').length > 0 &&"
            " [...document.querySelectorAll('div.chart .js-plotly-plot')].every("
            "   p => p.querySelector('.main-svg .trace'))]")
        if drawn[0] and drawn[1]:
            break
        time.sleep(0.25)
    return browser


def test_the_html_names_no_network_asset(page):
    text = page.read_text()
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//",
                         text, re.I), "report.html loads something from the network"
    assert "Plotly" in text  # plotly.js is inlined


def test_every_chart_is_drawn_offline(loaded):
    counts = loaded.execute_script("""
        const plots = [...document.querySelectorAll('div.chart .js-plotly-plot')];
        return {charts: document.querySelectorAll('div.chart').length, plots: plots.length,
                drawn: plots.filter(p => p.querySelector('.main-svg .trace')).length,
                traces: plots.map(p => p.data.length),
                svgs: document.querySelectorAll('div.svgchart svg').length,
                remote: performance.getEntriesByType('resource')
                          .map(e => e.name).filter(n => !/^(file|data|blob):/.test(n))};
    """)
    assert counts["plots"] >= 7, counts  # throughput (+ headline bars), latency, sizes, ...
    assert counts["drawn"] == counts["plots"] == counts["charts"], counts
    assert all(n >= 1 for n in counts["traces"]), counts
    assert counts["svgs"] >= 1  # the status matrix, inlined as SVG
    assert counts["remote"] == [], counts


def test_no_javascript_errors(loaded):
    errors = [e for e in loaded.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_a_legend_click_hides_a_server(loaded):
    from selenium.webdriver.common.by import By

    plot = loaded.find_element(By.CSS_SELECTOR, "div.chart[data-chart=throughput] .js-plotly-plot")
    before = loaded.execute_script("return arguments[0].data[0].visible", plot)
    assert before in (None, True)
    plot.find_elements(By.CSS_SELECTOR, ".legend .traces .legendtoggle")[0].click()
    deadline = time.monotonic() + 10
    after = before
    while time.monotonic() < deadline and after == before:
        after = loaded.execute_script("return arguments[0].data[0].visible", plot)
        time.sleep(0.1)
    assert after == "legendonly"


def test_a_family_button_hides_that_family(loaded):
    from selenium.webdriver.common.by import By

    plot = loaded.find_element(By.CSS_SELECTOR, "div.chart[data-chart=latency] .js-plotly-plot")
    button = plot.find_elements(By.CSS_SELECTOR, ".updatemenu-button")[0]
    family = button.text
    button.click()
    deadline = time.monotonic() + 10
    hidden = []
    while time.monotonic() < deadline and not hidden:
        hidden = loaded.execute_script(
            "return arguments[0].data.filter(t => t.meta.family === arguments[1])"
            ".map(t => t.visible)", plot, family)
        hidden = [v for v in hidden if v in (False, "legendonly")]
        time.sleep(0.1)
    assert hidden, f"clicking {family!r} hid none of its servers"


def test_hovering_a_point_shows_its_values(loaded):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    plot = loaded.find_element(By.CSS_SELECTOR, "div.chart[data-chart=latency] .js-plotly-plot")
    loaded.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    point = plot.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace .points path")[0]
    ActionChains(loaded).move_to_element(point).perform()
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline and "rounds" not in text:
        text = loaded.execute_script(
            "return [...arguments[0].querySelectorAll('.hoverlayer .hovertext')]"
            ".map(e => e.textContent).join(' | ')", plot)
        time.sleep(0.1)
    assert "rounds" in text and "conn" in text, text
