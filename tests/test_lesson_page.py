"""The interactive lesson page, driven in a real (headless) Chromium.

The page is generated once per module (``fastnn lesson --html DIR --quick``)
and loaded from the file system with networking blocked three ways (a proxy
to nowhere, CDP's blocked-URL list, and offline emulation); every request the
browser makes is read back from its performance log.  Screenshots of every
section go to ``$FASTNN_SCREENSHOTS`` (default: the test's temporary folder).

Without Chromium + chromedriver the browser tests skip, except under
``CI=true``, where they fail: CI installs Debian's ``chromium`` and
``chromium-driver``.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("bokeh")

import fastnn.functional as F  # noqa: E402
from fastnn import diagnostics  # noqa: E402
from fastnn.lesson import exp3_init, page  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--window-size=1500,2000")


def _find(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser_or_skip():
    chrome = _find("chromium", "chromium-browser", "google-chrome")
    driver = _find("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chrome and driver:
        return chrome, driver
    why = ("headless Chromium tests need chromium, chromedriver and selenium "
           f"(found chromium={chrome}, chromedriver/selenium={driver})")
    if IN_CI:
        pytest.fail(why + "; CI must install them (apt-get install chromium chromium-driver)")
    pytest.skip(why)


# -- the page -----------------------------------------------------------------

@pytest.fixture(scope="module")
def page_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lesson_page")
    # Through the command line, as a user runs it (and in a fresh process).
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "fastnn", "lesson", "--html", str(out), "--quick"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return out


@pytest.mark.slow
def test_page_is_one_self_contained_file(page_dir):
    files = os.listdir(page_dir)
    assert files == ["index.html"]
    text = (page_dir / "index.html").read_text(encoding="utf-8")
    assert len(text.encode()) <= 6 * 2 ** 20
    # Nothing to fetch: every script inline, no stylesheet links, images or
    # imports.  (Bokeh's bundle mentions a MathJax CDN for math text, which
    # the page does not use; the browser tests check no request is made.)
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", text, flags=re.IGNORECASE)
    assert all("src=" not in t and "href=" not in t for t in tags), tags
    assert not re.search(r"<(?:link|img|iframe)\b", text, flags=re.IGNORECASE)
    assert "@import" not in text and "url(http" not in text
    for anchor in ("setup", "normalization", "init", "batchnorm", "l2", "dropout", "losses",
                   "lr"):
        assert f'<section id="{anchor}">' in text


def test_build_rejects_bad_arguments_before_any_work(tmp_path):
    for bad in (0, -1, 2.5, "3", True, None):
        with pytest.raises(ValueError, match="n_passes"):
            page.build(tmp_path, quick=True, n_passes=bad)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        page.build(blocker, quick=True)


def test_html_and_only_are_exclusive(capsys):
    from fastnn import lesson
    with pytest.raises(SystemExit) as exc:
        lesson.main(["--html", "x", "--only", "3"])
    assert exc.value.code == 2
    assert "--only" in capsys.readouterr().err


# -- the browser --------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(request):
    """Chromium on the page, networking blocked; the tests using it are marked slow."""
    chrome, driver_path = _browser_or_skip()   # before a minute spent building the page
    page_dir = request.getfixturevalue("page_dir")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    profile = tempfile.mkdtemp(prefix="fastnn-chrome-")
    for flag in CHROME_FLAGS + (f"--user-data-dir={profile}",):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        drv.execute_cdp_cmd("Network.enable", {})
        drv.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*",
                                                                "ws://*", "wss://*"]})
        drv.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        # Leave Chromium's new-tab page (chrome:// resources) out of the log.
        drv.get("about:blank")
        drv.get_log("performance")
        drv.get((page_dir / "index.html").as_uri())
        _wait(drv, "return window.lesson && window.lesson.ready === true")
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(drv, script, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(drv, timeout).until(lambda d: d.execute_script(script))


def _screens_dir(tmp_path_factory):
    out = os.environ.get("FASTNN_SCREENSHOTS")
    if out:
        os.makedirs(out, exist_ok=True)
        return out
    return str(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    return _screens_dir(tmp_path_factory)


def _shoot(drv, screens, anchor):
    el = drv.find_element("id", anchor)
    drv.execute_script("arguments[0].scrollIntoView();", el)
    drv.execute_script("return new Promise(r => requestAnimationFrame(() => "
                       "requestAnimationFrame(r)))")
    path = os.path.join(screens, f"lesson_{anchor}.png")
    el.screenshot(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _js(drv, body):
    """Run ``body`` with ``m(name)`` = the Bokeh model of that name; JSON back."""
    return drv.execute_script(
        "const doc = Bokeh.documents[0]; const m = (n) => doc.get_model_by_name(n);"
        "const toList = (a) => Array.from(a);" + body)


def _click(drv, element_id):
    drv.find_element("id", element_id).click()


def _set_slider(drv, element_id, value):
    drv.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));", element_id, str(value))


@pytest.mark.slow
def test_no_console_errors_and_no_request_leaves_the_file(browser, screens):
    for anchor in ("setup", "normalization"):
        _shoot(browser, screens, anchor)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    urls = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls, "the performance log saw no request at all (not even the page)"
    outside = [u for u in urls if not u.startswith(("file://", "data:", "blob:"))]
    assert not outside, outside


def _init_layers(drv, key):
    return _js(drv, f"""
        return [0, 1, 2, 3, 4].map((j) => {{
            const d = m(`init-src-{key}-${{j}}`).data;
            const f = m(`init-fig-{key}-${{j}}`);
            return {{top: toList(d.top), right: toList(d.right), color: d.color[0],
                     title: f.title.text, pass: window.lesson.state.init.pass['{key}']}};
        }});""")


@pytest.mark.slow
@pytest.mark.parametrize("key", [k for k, *_ in exp3_init.INITS])
def test_forward_pass_changes_histograms_and_verdicts_match_health(browser, screens, key):
    browser.find_element("css selector", f'input[name="init-scheme"][value="{key}"]').click()
    X = exp3_init.pass_inputs()
    shown = []
    for press in range(2):
        before = _init_layers(browser, key)
        _click(browser, "init-forward")
        after = _init_layers(browser, key)
        k = after[0]["pass"]
        assert k == before[0]["pass"] + 1
        # diagnostics.health on the very network and batch of pass k.
        model, Xb = exp3_init.pass_model(key, k), exp3_init.pass_batch(X, k)
        verdicts = diagnostics.health(model, Xb).verdicts[:exp3_init.PASS_DEPTH]
        for j, layer in enumerate(after):
            assert layer["title"].startswith(f"layer {j + 1}: {verdicts[j]},"), layer["title"]
            want = "#2ca02c" if verdicts[j] == "healthy" else "#d62728"
            assert layer["color"] == want
        shown.append(after)
    if key != "zeros":  # zero init is exactly 0 on every batch: nothing to change
        for j in range(exp3_init.PASS_DEPTH):
            a, b = shown[0][j], shown[1][j]
            assert a["top"] != b["top"] or a["right"] != b["right"], (key, j)
    if key == "he":
        _shoot(browser, screens, "init")


@pytest.mark.slow
def test_epoch_slider_moves_the_distributions(browser, screens):
    def state():
        return _js(browser, "return ['plain', 'batchnorm'].map((k) => "
                            "({top: toList(m(`bn-src-${k}`).data.top), "
                            "title: m(`bn-fig-${k}`).title.text}));")
    first = state()
    epochs = int(browser.find_element("id", "bn-slider").get_attribute("max"))
    _set_slider(browser, "bn-slider", epochs)
    last = state()
    for a, b in zip(first, last):
        assert a["top"] != b["top"]
        assert "epoch 0" in a["title"] and f"epoch {epochs}" in b["title"]
    _shoot(browser, screens, "batchnorm")


@pytest.mark.slow
def test_drop_greys_exactly_the_neurons_of_dropout_mask(browser, screens):
    sizes = page.DROPOUT_NET
    hidden = sizes[1:-1]
    for p_index, presses in ((5, 3), (2, 1), (9, 1)):
        _set_slider(browser, "drop-slider", p_index)
        for _ in range(presses):
            _click(browser, "drop-button")
        got = _js(browser, """
            const d = m('drop-nodes-src').data, st = window.lesson.state.dropout;
            return {seed: st.seed, p: st.p, layer: toList(d.layer), unit: toList(d.unit),
                    fill: toList(d.fill), title: m('drop-fig').title.text};""")
        want = F.dropout_mask((len(hidden), hidden[0]), got["p"], got["seed"])
        assert got["p"] == p_index / 10
        grey = np.zeros_like(want)
        for layer, unit, fill in zip(got["layer"], got["unit"], got["fill"]):
            if 0 < layer < len(sizes) - 1:
                grey[layer - 1, unit] = fill == "#bbbbbb"
        np.testing.assert_array_equal(grey, ~want)
        assert f"seed {got['seed']}" in got["title"]
    _set_slider(browser, "drop-slider", 5)
    _shoot(browser, screens, "dropout")


@pytest.mark.slow
def test_page_generator_matches_dropout_mask_on_many_seeds(browser):
    # The JavaScript port against fastnn for many seeds, sizes and rates,
    # including huge seeds (64-bit) and p at the ends.
    cases = [(s, p, n) for s, p, n in ((0, 0.5, 12), (1, 0.5, 12), (12345, 0.3, 200),
                                       (2 ** 63 + 7, 0.7, 64), (2 ** 64 - 1, 0.5, 33),
                                       (99, 0.0, 10), (99, 1.0, 10))]
    for seed, p, n in cases:
        got = browser.execute_script(
            "return window.lesson.dropoutMask(arguments[0], arguments[1], BigInt(arguments[2]));",
            n, p, str(seed))
        np.testing.assert_array_equal(np.array(got), F.dropout_mask(n, p, seed))


@pytest.mark.slow
def test_other_sliders_update_their_figures(browser, screens):
    before = _js(browser, "return toList(m('l2-fit-src').data.y);")
    _set_slider(browser, "l2-slider", 0)
    after = _js(browser, "return toList(m('l2-fit-src').data.y);")
    assert before != after
    assert "lambda = 0" in browser.find_element("id", "l2-value").text
    _shoot(browser, screens, "l2")
    _set_slider(browser, "loss-slider", 0)
    ce = float(browser.find_element("id", "loss-value-cross_entropy").text)
    assert ce == pytest.approx(np.log(1 + 2 * np.exp(4.0)), abs=2e-3)  # score -4
    _set_slider(browser, "loss-slider", 100)
    _shoot(browser, screens, "losses")
    n = int(browser.find_element("id", "lr-slider").get_attribute("max"))
    _set_slider(browser, "lr-slider", n)
    assert "diverged" in browser.find_element("id", "lr-value").text   # lr 5
    _set_slider(browser, "lr-slider", 3)
    assert "validation accuracy" in browser.find_element("id", "lr-value").text
    _shoot(browser, screens, "lr")
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
