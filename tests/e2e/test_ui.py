"""The Dagster UI in a real browser: after the real demo (`prefgen demo`, run once per test
session by the `demo_run` fixture, which the label-quality test shares), headless Chromium
shows the asset graph, the demo's runs (kept in the Dagster instance beside the DuckDB file),
the demo batch's rating plots and the checks on `dpo_pairs`. A screenshot of each page lands
in test-artifacts/ui/, whether its check passed or not (with the page's HTML when not), with
the demo's output in demo.log.

Debian's `chromium` and `chromium-driver` drive it (scripts/setup.sh installs them); the
driver is named explicitly, so Selenium never looks for one on the network."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import dagster as dg
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from prefgen_dagster.bundled import DEMO_INSTRUCTIONS
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.stages import STAGES
from tests.conftest import CLEAN_ENV

from .conftest import DemoRun
from .servers import dagster_webserver

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Wide enough that the asset graph (nine columns), fitted to the window, draws whole nodes
    # with their full names (narrower, it draws small boxes with shortened names: at 2,400
    # pixels `evolved_completions` became `evolv…_completions`).
    "--window-size=2880,1300",
)
PAGE_TIMEOUT_S = 60
# The community sign-up dialog Dagster opens once per instance, about a second after the
# first page; gone for good once skipped.
DIALOG_TIMEOUT_S = 15

SETTLE_TIMEOUT_S = 5
ANIMATING = """return document.getAnimations().filter(
    (a) => a.playState === "running" && a.effect.getComputedTiming().iterations !== Infinity
).length"""

BATCH = DEMO_INSTRUCTIONS.name
# Every batch asset: the Python stages and the SQL models.
GRAPH_ASSETS = (*(stage.asset for stage in STAGES), *load_project().models)
SKIP_DIALOG = (By.XPATH, "//button[normalize-space()='Skip']")
# Markdown metadata longer than a few lines shows as a link that opens it in a dialog.
SHOW_PLOTS = (
    By.XPATH,
    "//tr[td[normalize-space()='plots']]//a[normalize-space()='[Show Markdown]']",
)
PLOT = (By.CSS_SELECTOR, "img[src^='data:image/png;base64']")

Check = Callable[[WebDriverWait], object]


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile; quit afterwards whatever happened."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def text_shows(*words: str, loading: str | None = None) -> Callable[[WebDriver], bool]:
    """The page's visible text holds every word, whole (`completions` is not found in
    `evolved_completions`), and no longer `loading`."""
    patterns = [re.compile(rf"(?<!\w){re.escape(word)}(?!\w)") for word in words]

    def shown(driver: WebDriver) -> bool:
        text = driver.find_element(By.TAG_NAME, "body").text
        return all(p.search(text) for p in patterns) and not (loading and loading in text)

    return shown


def plot_loaded(driver: WebDriver) -> bool:
    """A base64 PNG is on the page and decoded (an image that failed has no width)."""
    return any(image.get_property("naturalWidth") for image in driver.find_elements(*PLOT))


def open_plots(wait: WebDriverWait) -> None:
    wait.until(ec.element_to_be_clickable(SHOW_PLOTS)).click()
    wait.until(plot_loaded)


def look(driver: WebDriver, url: str, name: str, what: str, check: Check) -> str | None:
    """Open `url` and wait for `check`; save the screenshot `name`.png either way (and the
    HTML when the check fails). None, or what was not shown."""
    shot = ARTIFACTS / f"{name}.png"
    try:
        driver.get(url)
        check(
            WebDriverWait(
                driver,
                PAGE_TIMEOUT_S,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            )
        )
        problem = None
    except TimeoutException:
        problem = f"{url}: {what} not shown within {PAGE_TIMEOUT_S} s; see {shot}"
        shot.with_suffix(".html").write_text(driver.page_source, encoding="utf-8")
    settle(driver)
    driver.save_screenshot(str(shot))
    return problem


def settle(driver: WebDriver) -> None:
    """Let a dialog finish fading in before the screenshot (endless spinners aside)."""
    with contextlib.suppress(TimeoutException):  # then the picture is only less sharp
        WebDriverWait(driver, SETTLE_TIMEOUT_S).until(lambda d: d.execute_script(ANIMATING) == 0)


def skip_community_dialog(driver: WebDriver, url: str) -> None:
    """Open `url` and skip Dagster's sign-up dialog, which would cover the pages' links."""
    driver.get(url)
    try:
        WebDriverWait(driver, DIALOG_TIMEOUT_S).until(
            ec.element_to_be_clickable(SKIP_DIALOG)
        ).click()
    except TimeoutException:
        return  # not shown (already skipped on this instance)
    WebDriverWait(driver, DIALOG_TIMEOUT_S).until(ec.invisibility_of_element_located(SKIP_DIALOG))


def run_ids(dagster_home: Path) -> list[str]:
    """The runs recorded in the instance at `dagster_home`."""
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        return [run.run_id for run in instance.get_runs()]
    finally:
        instance.dispose()


def ui_problems(driver: WebDriver, base: str, runs: list[str]) -> list[str]:
    """Each page in turn, a screenshot of each: what the UI at `base` failed to show."""
    checks = [check.name for check in load_project().checks if check.asset == "dpo_pairs"]
    assert checks
    ratings_page = "/assets/ratings?" + urlencode({"view": "events", "partition": BATCH})
    pages: list[tuple[str, str, str, Check]] = [
        (
            "/locations/prefgen/asset-groups/prefgen/lineage",
            "asset_graph",
            "the asset names and their states",
            lambda wait: wait.until(text_shows(*GRAPH_ASSETS, loading="Loading")),
        ),
        (
            "/runs",
            "runs",
            f"the demo's runs {runs}",
            lambda wait: wait.until(text_shows(*(run_id[:8] for run_id in runs))),
        ),
        (ratings_page, "ratings_plots", f"the {BATCH} ratings plot (metadata `plots`)", open_plots),
        (
            "/assets/dpo_pairs?view=checks",
            "dpo_pairs_checks",
            f"the checks {checks}",
            lambda wait: wait.until(text_shows(*checks)),
        ),
    ]
    skip_community_dialog(driver, base + "/overview")
    found = [look(driver, base + path, name, what, check) for path, name, what, check in pages]
    return [problem for problem in found if problem]


@pytest.mark.slow
def test_the_ui_shows_the_demo_run(tmp_path: Path, demo_run: DemoRun) -> None:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "no Chromium: run scripts/setup.sh"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.iterdir():  # only this run's pictures
        old.unlink()
    demo, workdir = demo_run.result, demo_run.workdir
    (ARTIFACTS / "demo.log").write_text(demo.stdout + demo.stderr, encoding="utf-8")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    home = (workdir / "data" / "dagster").resolve()
    assert f"Runs:        {home}" in demo.stdout
    assert f"DAGSTER_HOME={home}" in demo.stdout  # the `dagster dev` command it prints
    runs = run_ids(home)
    assert runs, "the demo recorded no run"

    server_env = {
        **CLEAN_ENV,
        "DAGSTER_HOME": str(home),
        "PREFGEN_CONFIG": str(workdir / "prefgen.yaml"),
    }
    with (
        dagster_webserver(server_env, tmp_path / "webserver.log") as graphql_url,
        chromium(tmp_path / "chromium-profile") as driver,
    ):
        problems = ui_problems(driver, graphql_url.removesuffix("/graphql"), runs)
    assert not problems, "\n".join(problems)
