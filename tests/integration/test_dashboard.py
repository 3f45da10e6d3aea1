"""The dashboard at /ui in a real browser (Debian's chromium, driven by Playwright) against a
real gateway process serving the example config.

Screenshots go to ``test-artifacts/`` (gitignored). Every request the page makes is recorded:
none may leave the gateway's origin.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from support import EXAMPLE_MODELS, ROOT, gateway_process

pytestmark = pytest.mark.integration

TOKEN = "dashboard-token"
ACTOR = "alice"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
AUTH = {"authorization": f"Bearer {TOKEN}"}

# the machine may be busy (two cores shared with other suites): waits are generous, and only
# ever bound a wait for something that must happen
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``modelrouter serve`` on a copy of the example config (its models, its rollout)."""
    folder = tmp_path_factory.mktemp("dashboard")
    shutil.copy(ROOT / "examples" / "churn" / "modelrouter.yaml", folder / "modelrouter.yaml")
    (folder / "models").symlink_to(EXAMPLE_MODELS)
    env = {"MODELROUTER_ADMIN_TOKEN": TOKEN}
    with gateway_process(folder / "modelrouter.yaml", env=env) as url:
        yield url


@pytest.fixture(scope="module")
def api(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    pw: Playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (own session storage) whose every request is checked to stay on the
    origin of the gateway it opened."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(30_000)
    requests: list[str] = []
    errors: list[str] = []
    p.on("request", lambda r: requests.append(r.url))
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield p
    parts = urlsplit(p.url)
    origin = f"{parts.scheme}://{parts.netloc}/"
    context.close()
    assert origin.startswith("http://127.0.0.1:"), origin
    assert requests, "the page made no request at all"
    foreign = [u for u in requests if not (u.startswith(origin) or u.startswith("data:"))]
    assert foreign == [], f"requests left the gateway's origin: {foreign}"
    assert errors == [], f"the page raised: {errors}"


def sign_in(page: Page, url: str, token: str = TOKEN) -> None:
    page.goto(url + "/")  # redirects to /ui
    page.get_by_label("Admin token", exact=True).fill(token)
    page.get_by_label("Your name").fill(ACTOR)
    page.get_by_role("button", name="Connect").click()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def infer(url: str, n: int, headers: Callable[[int], dict[str, str]] | None = None) -> list[str]:
    """``n`` routed requests to churn; the versions that answered."""
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}
    served = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(n):
            h = headers(i) if headers else {"x-user-id": f"user-{i}"}
            r = c.post("/v2/models/churn/infer", json=body, headers=h)
            assert r.status_code == 200, r.text
            served.append(r.headers["x-model-version"])
    return served


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in time (last: {value!r})")
        time.sleep(0.1)


def test_the_root_redirects_to_the_page_and_its_files_allow_nothing_foreign(gateway: str) -> None:
    r = httpx.get(gateway + "/", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == "/ui"
    page = httpx.get(gateway + "/ui")
    assert page.status_code == 200
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert (
        httpx.get(gateway + "/ui/dashboard.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    missing = httpx.get(gateway + "/ui/nope.js")
    assert missing.status_code == 404
    assert "no dashboard file 'nope.js'" in missing.json()["error"]


def test_a_wrong_token_is_refused(page: Page, gateway: str) -> None:
    sign_in(page, gateway, token="not-the-token")
    alert = page.get_by_role("alert").filter(has_text="refused")
    expect(alert).to_contain_text("The gateway refused the admin token")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('modelrouter.token')") is None
    shot(page, "wrong-token")
    r = httpx.get(gateway + "/api/v1/events", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401
    assert "bearer token" in r.json()["error"]


def test_every_model_version_and_the_rollout_are_shown(
    page: Page, gateway: str, api: httpx.Client
) -> None:
    sign_in(page, gateway)
    expect(page.locator("#conn")).to_have_text("live")
    for model in api.get("/api/v1/models").json()["models"]:
        card = page.locator(f"#model-{model['name']}")
        for v in model["versions"]:
            row = card.locator(f"tr[data-version='{v['name']}']")
            expect(row).to_contain_text(v["state"])
    expect(page.locator("#model-churn tr[data-version='v3']")).to_contain_text("mirrored")
    rollout = page.locator("#rollout-churn-v2")
    status = api.get("/api/v1/rollouts/churn-v2").json()
    expect(rollout).to_contain_text("canary of churn, rule default: v1 → v2")
    expect(rollout.locator("h3 .badge")).to_have_text(status["phase"])
    expect(rollout.locator(".timeline")).to_contain_text("start")
    # the token is kept for the session: a reload does not ask again
    page.reload()
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#token-form")).to_be_hidden()
    shot(page, "overview")


def test_traffic_moves_the_figures_without_a_reload(page: Page, gateway: str) -> None:
    sign_in(page, gateway)
    expect(page.locator("#conn")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")
    requests = page.locator("#figures-churn tr[data-version='v1'] td.requests")
    before = int(requests.inner_text())
    served = infer(gateway, 60)
    on_v1 = served.count("v1")
    assert on_v1 > 0
    # the per-version figures (all gateways, from the store) and the live share chart both move
    expect(requests).not_to_have_text(str(before))
    wait_for(lambda: int(requests.inner_text()) >= before + on_v1)
    legend = page.locator("#rule-churn-default-legend")
    expect(legend).to_contain_text(re.compile(r"of \d+ req/30 s"))
    wait_for(lambda: "of 0 req" not in legend.inner_text())
    assert page.locator("#rule-churn-default-chart rect").count() >= 1
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    shot(page, "traffic")


def test_pause_pauses_the_rollout(page: Page, gateway: str, api: httpx.Client) -> None:
    sign_in(page, gateway)
    rollout = page.locator("#rollout-churn-v2")
    page.get_by_role("button", name="Pause rollout churn-v2").click()
    wait_for(lambda: api.get("/api/v1/rollouts/churn-v2").json()["phase"] == "Paused")
    expect(rollout.locator("h3 .badge")).to_have_text("Paused")
    expect(page.get_by_role("button", name="Resume rollout churn-v2")).to_be_enabled()
    history = api.get("/api/v1/rollouts/churn-v2").json()["history"]
    assert history[0]["action"] == "pause"
    assert history[0]["actor"] == ACTOR  # the name typed at sign-in, sent as x-actor
    expect(rollout.locator(".timeline li").first).to_contain_text("pause")


def test_setting_weights_changes_the_served_split(
    page: Page, gateway: str, api: httpx.Client
) -> None:
    api.post("/api/v1/rollouts/churn-v2/pause")  # so the controller leaves the rule alone
    sign_in(page, gateway)
    form = page.get_by_role("form", name="Set the weights of rule default")
    form.get_by_label("Weight of v1 in rule default").fill("0")
    form.get_by_label("Weight of v2 in rule default").fill("100")
    form.get_by_label("Reason for the new weights of rule default").fill("all in on v2")
    form.get_by_role("button", name="Set weights").click()
    expect(page.locator("#toast")).to_contain_text("v1 0%, v2 100%")

    rule = next(
        r for r in api.get("/api/v1/models/churn/routing").json()["http"] if r["name"] == "default"
    )
    assert {d["destination"]: d["weight"] for d in rule["route"]} == {"v1": 0, "v2": 100}
    assert set(infer(gateway, 30)) == {"v2"}
    change = api.get("/api/v1/audit", params={"kind": "change", "order": "desc", "limit": 1})
    record = change.json()["records"][0]
    assert (record["actor"], record["reason"]) == (ACTOR, "all in on v2")
    # the page follows: the versions table and the "who changed" list
    expect(page.locator("#model-churn tr[data-version='v1']")).to_contain_text("default: 0%")
    expect(page.locator("#changes tbody tr").first).to_contain_text("v1 0%, v2 100%")
    expect(page.locator("#changes tbody tr").first).to_contain_text(ACTOR)
    # the paused rollout's card: the live split, and a note with the rollout's own weights
    status = api.get("/api/v1/rollouts/churn-v2").json()
    assert status["weights"] == {"v1": 0, "v2": 100}
    assert status["rolloutWeights"] != status["weights"]
    card = page.locator("#rollout-churn-v2")
    expect(card.locator(".split")).to_have_attribute("aria-label", "live weights v1 0%, v2 100%")
    expect(card.locator(".note")).to_contain_text("someone else changed rule default")

    # weights that do not add up are refused before any request
    form.get_by_label("Weight of v1 in rule default").fill("30")
    form.get_by_label("Reason for the new weights of rule default").fill("too much")
    form.get_by_role("button", name="Set weights").click()
    expect(page.locator("#toast")).to_contain_text("add up to 130, not 100")


def test_unload_and_load_a_version(page: Page, gateway: str, api: httpx.Client) -> None:
    sign_in(page, gateway)

    def state() -> str:
        churn = next(m for m in api.get("/api/v1/models").json()["models"] if m["name"] == "churn")
        return next(v["state"] for v in churn["versions"] if v["name"] == "v3")

    page.get_by_role("button", name="Unload churn v3", exact=True).click()
    expect(page.locator("#toast")).to_contain_text("churn v3: UNLOADED")
    wait_for(lambda: state() == "UNLOADED")
    page.get_by_role("button", name="Load churn v3", exact=True).click()
    wait_for(lambda: state() == "READY")
    expect(page.locator("#model-churn tr[data-version='v3']")).to_contain_text("READY")
    params = {"kind": "admin", "model": "churn", "order": "desc", "limit": 2}
    actions = api.get("/api/v1/audit", params=params).json()["records"]
    assert [(r["action"], r["actor"]) for r in actions] == [("load", ACTOR), ("unload", ACTOR)]


def test_audit_filters_and_explain(page: Page, gateway: str) -> None:
    infer(gateway, 1, lambda i: {"x-region": "eu", "x-request-id": "dash-eu-1"})
    sign_in(page, gateway)
    page.get_by_label("Rule", exact=True).fill("eu")
    page.get_by_label("Kind", exact=True).select_option("decision")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#audit tbody tr")
    expect(rows.first).to_contain_text("eu")
    assert set(rows.locator("td:nth-child(4)").all_inner_texts()) == {"eu"}
    page.get_by_role("button", name="Explain request dash-eu-1").click()
    expect(page.locator("#explanation")).to_contain_text("Request dash-eu-1")
    expect(page.locator("#explanation")).to_contain_text("matched rule 'eu'")
    page.get_by_label("Since", exact=True).fill("yesterday-ish")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#audit")).to_contain_text("The audit query was refused: since")


def test_phone_width(page: Page, gateway: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, gateway)
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator("#rollout-churn-v2")).to_be_visible()
    expect(page.locator("#rollout-churn-v2 .timeline li").first).to_be_visible()
    # wide tables scroll inside their boxes; no card and no page is wider than the phone
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for card in page.locator(".card").all():
        box = card.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390, card.get_attribute("id")
    shot(page, "phone")


def test_a_lost_connection_reconnects(page: Page, gateway: str) -> None:
    """The first stream ends at once, the second is refused (a gateway restarting); the page
    keeps trying and goes live on the third."""
    calls: list[str] = []

    def flaky(route: Route) -> None:
        calls.append(route.request.url)
        if len(calls) == 1:
            route.fulfill(status=200, content_type="text/event-stream", body="retry: 100\n\n")
        elif len(calls) == 2:
            route.fulfill(status=503, content_type="application/json", body='{"error": "x"}')
        else:
            route.continue_()

    page.route("**/api/v1/events", flaky)
    sign_in(page, gateway)
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    expect(page.locator("#conn")).to_have_text("live")
    assert len(calls) == 3
    expect(page.locator("#rollout-churn-v2")).to_be_visible()


EXPERIMENTS = """
server: {store: "sqlite:///./gw.db", telemetry: {flushInterval: 0.2}}
models:
  churn:
    versions:
      v1: {storageUri: ./models/churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./models/churn/v2, modelFormat: sklearn}
    http:
      - name: default
        route: [{destination: v1, weight: 50}, {destination: v2, weight: 50}]
        sticky: {header: x-user-id}
  offers:
    versions:
      a: {storageUri: ./models/churn/v1, modelFormat: sklearn}
      b: {storageUri: ./models/churn/v2, modelFormat: sklearn}
    http:
      - name: default
        route: [{destination: a, weight: 50}, {destination: b, weight: 50}]
rollouts:
  churn-ab:
    model: churn
    rule: default
    primary: v1
    canary: v2
    strategy: abtest
    analysis: {interval: 1s, weight: 50, testMetric: accuracy}
  offers-bandit:
    model: offers
    rule: default
    primary: a
    canary: b
    strategy: bandit
    analysis: {interval: 1s, testMetric: reward, minWeight: 5}
"""


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway running an A/B test and a bandit (one second intervals)."""
    folder = tmp_path_factory.mktemp("experiments")
    (folder / "models").symlink_to(EXAMPLE_MODELS)
    (folder / "modelrouter.yaml").write_text(EXPERIMENTS)
    with gateway_process(
        folder / "modelrouter.yaml", env={"MODELROUTER_ADMIN_TOKEN": TOKEN}
    ) as url:
        yield url


def feed_experiments(url: str, n: int) -> None:
    """Requests with feedback: v2 always right and v1 always wrong; b rewarded, a not."""
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        for i in range(n):
            r = c.post("/v2/models/churn/infer", json=body, headers={"x-user-id": f"u{i}"})
            label = r.json()["outputs"][0]["data"][0]
            truth = label if r.headers["x-model-version"] == "v2" else 1 - label
            rid = r.headers["x-request-id"]
            assert c.post("/api/v1/feedback", json={"request_id": rid, "truth": [truth]}).is_success
            r = c.post("/v2/models/offers/infer", json=body)
            reward = 1.0 if r.headers["x-model-version"] == "b" else 0.0
            rid = r.headers["x-request-id"]
            assert c.post("/api/v1/feedback", json={"request_id": rid, "reward": reward}).is_success


def started(url: str) -> bool:
    """Both experiments have set their first weights: traffic sent before would all go to the
    primaries (an A/B test with no canary data holds forever), and it would not count, being
    from before the rollouts' start."""
    r = httpx.get(url + "/api/v1/rollouts", headers=AUTH, timeout=60)
    r.raise_for_status()
    phases = {x["name"]: x.get("phase") for x in r.json()["rollouts"]}
    return phases == {"churn-ab": "Progressing", "offers-bandit": "Progressing"}


def decided(url: str) -> bool:
    r = httpx.get(url + "/api/v1/rollouts/churn-ab?limit=0", headers=AUTH, timeout=60)
    r.raise_for_status()
    return bool((r.json().get("result") or {}).get("winner"))


def test_ab_effect_and_decision_and_bandit_weights(page: Page, experiments: str) -> None:
    sign_in(page, experiments)
    expect(page.locator("#conn")).to_have_text("live")
    wait_for(lambda: started(experiments))
    # fed in rounds until the A/B test has decided: this test is about what the page shows
    # of a decision, not how much feedback one takes (in one full run in three, before the
    # rollout's totals counted the bucket it started in, only 47 of 120 counted)
    for _ in range(20):
        feed_experiments(experiments, 40)
        if decided(experiments):
            break
    ab = page.locator("#rollout-churn-ab")
    try:
        expect(ab.locator("dd.decision")).to_have_text("v2 wins")
    except AssertionError as exc:  # what the API says, to tell the page from the controller
        r = httpx.get(experiments + "/api/v1/rollouts/churn-ab?limit=20", headers=AUTH, timeout=60)
        raise AssertionError(f"{exc}\nthe API's status of churn-ab: {r.text}") from None
    # v2 was always right and v1 always wrong: the effect is +1, its interval around it
    figures = ab.locator(".ab")
    expect(figures).to_contain_text(
        re.compile(r"effect\s*1\.0000\s*95% interval\s*\[0\.\d+, 1\.\d+\]")
    )
    expect(figures).to_contain_text(re.compile(r"v1 \(primary\)\s*0\.000 of \d+"))
    expect(figures).to_contain_text(re.compile(r"v2 \(canary\)\s*1\.000 of \d+"))
    expect(ab.locator("h3 .badge")).to_have_text("Succeeded")
    expect(ab.locator(".timeline")).to_contain_text("v2 wins on accuracy")
    bandit = page.locator("#rollout-offers-bandit")
    expect(bandit.locator(".bandit polyline")).to_have_count(2)
    expect(bandit.locator(".bandit .legend")).to_contain_text("P(best)")
    expect(bandit.locator(".timeline")).to_contain_text("Thompson sampling")
    page.locator("#rollouts-section").screenshot(path=str(ARTIFACTS / "dashboard-experiments.png"))
