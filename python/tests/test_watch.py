"""`fedreq watch` in a real browser (Debian's chromium through its chromedriver): the page is
refused without its token; it shows every node of a federation, draws the scalars nodes send,
searches, filters node logs, and turns a stopped node offline within a second. It saves a
screenshot."""

import os
import shutil
import subprocess
import time

import pytest

import fedreq
from conftest import PLAN, ROOT
from test_requests import train_message

FEDREQ = ROOT / "target" / "debug" / "fedreq"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOT = ROOT / "target" / "screenshots" / "watch.png"


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("FEDREQ_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (FEDREQ_REQUIRE_BROWSER)")
        pytest.skip("chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1300,1150"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def read(browser, selector, what):
    """`what` ("text" or an attribute) of each element `selector` finds, read in one go: the
    page redraws its tables as events arrive."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => arguments[1] === 'text' ? e.textContent : e.getAttribute(arguments[1]))",
        selector, what,
    )


def test_the_live_page_shows_the_federation_as_it_changes(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with fedreq.Federation(5) as federation:
        watch = subprocess.Popen(
            [FEDREQ, "--broker", federation.broker, "--researcher-id", "watcher", "watch"],
            # Its stderr goes to the test's output: why it failed, if it does.
            stdout=subprocess.PIPE, text=True,
        )
        try:
            url = watch.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:") and "?token=" in url, url
            browser.get(url.split("?")[0])
            assert "a token is needed" in browser.find_element(By.TAG_NAME, "body").text
            browser.get(url.split("=")[0] + "=" + "0" * 32)
            assert "a token is needed" in browser.find_element(By.TAG_NAME, "body").text

            browser.get(url)
            wait = WebDriverWait(browser, 5, poll_frequency=0.05)
            nodes = federation.node_ids
            online = lambda b: set(read(b, "#nodes tr[data-state=online]", "data-node"))
            wait.until(lambda b: online(b) == set(nodes))

            # Scalars of our researcher id: two nodes, ten rounds, one chart with a line each.
            requests = federation.requests(researcher_id="watcher")
            for round_ in range(10):
                for i, node in enumerate(nodes[:2]):
                    # A round apart, so that their losses (1 / (round + 1)) draw two lines.
                    requests.send_message({**train_message(f"dataset-clinical-{i}"), "round": round_ + i}, node)
                assert len(requests.get_responses(["train"])) == 2
            chart = "#charts .chart[data-key='job-1 · TRAINING/Loss']"
            wait.until(lambda b: read(b, chart, "data-points") == ["20"])
            # Drawn a moment later (charts are redrawn four times a second), a line per node.
            legend = lambda b: [n.strip() for n in read(b, chart + " .u-legend .u-series th", "text")]
            wait.until(lambda b: [name for name in legend(b) if name.startswith("node-")] == nodes[:2])
            # The nodes that sent scalars were heard; the others were not since.
            heard = lambda b: read(b, "#nodes tr td:nth-child(4)", "text")
            wait.until(lambda b: [cell != "—" for cell in heard(b)] == [True, True] + [False] * 3)

            browser.find_element(By.ID, "tags").send_keys("images")
            browser.find_element(By.ID, "search").click()
            expected = sorted(requests.search(["images"]))
            assert expected and len(expected) < len(nodes)
            found = lambda b: read(b, "#search-result", "data-nodes")[0]
            wait.until(lambda b: found(b) is not None)
            assert sorted(found(browser).split(",")) == expected

            # Node logs (the nodes log a plan they received), filtered by node and by level.
            assert requests.training_plan_approve(str(PLAN), nodes=nodes[:2]) == dict.fromkeys(nodes[:2], True)
            lines = lambda b: read(b, "#logs div", "text")
            wait.until(lambda b: all(any(f" {node}: " in line for line in lines(b)) for node in nodes[:2]))
            choose = "const s = document.getElementById(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change'));"
            browser.execute_script(choose, "log-node", nodes[0])
            assert lines(browser) and all(f" {nodes[0]}: " in line for line in lines(browser)), lines(browser)
            browser.execute_script(choose, "level", "CRITICAL")
            assert lines(browser) == []
            browser.execute_script(choose, "level", "")
            browser.execute_script(choose, "log-node", "")

            stopped = nodes[-1]
            federation.stop_node(stopped)
            state = lambda b: read(b, f"#nodes tr[data-node='{stopped}']", "data-state")
            WebDriverWait(browser, 1, poll_frequency=0.02).until(lambda b: state(b) == ["offline"])
            assert online(browser) == set(nodes) - {stopped}
            time.sleep(0.3)  # the chart's next redraw
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            assert browser.save_screenshot(str(SCREENSHOT))
        finally:
            watch.terminate()
            watch.wait(5)
