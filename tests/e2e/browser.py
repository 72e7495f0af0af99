"""browser: the pages driven in Debian's headless chromium, as a person
uses them: fields found by their label, buttons and links by their text,
never by CSS path.  One chromium per test class (BrowserTestCase), a
screenshot and the page's HTML kept under TEST_TMPDIR for every failing
test, and axe-core (web/node_modules, installed by tools/test) run on any
page with assertAccessible.

Chromium is started with the flags that keep it off the network (it would
otherwise fetch updates, safe-browsing lists and field trials, which on a
closed network only wait and log) and a fresh profile each time."""

import functools
import json
import os
import re
import shutil
import sys
import tempfile
import time

try:
    from selenium import webdriver
except ImportError:     # Debian's python3-selenium, under another Python
    sys.path.append("/usr/lib/python3/dist-packages")
    from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException,
                                        StaleElementReferenceException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from harness import REPO_ROOT, StudyhubTestCase, new_dir

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_JS = os.path.join(REPO_ROOT, "web", "node_modules", "axe-core", "axe.min.js")
WAIT = 10.0

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--metrics-recording-only", "--password-store=basic", "--use-mock-keychain",
    "--window-size=390,844",        # a phone: the pages are built for it first
)


def xpath_literal(s):
    """s as an XPath string literal (no escaping exists in XPath 1.0)."""
    if "'" not in s:
        return f"'{s}'"
    if '"' not in s:
        return f'"{s}"'
    return "concat('" + "', \"'\", '".join(s.split("'")) + "')"


def start_chromium(profile_dir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    service = Service(executable_path=CHROMEDRIVER,
                      log_path=os.path.join(profile_dir, "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


class BrowserTestCase(StudyhubTestCase):
    """A test class with one chromium (cls.browser) for all its tests.
    Subclasses start their server in setUpClass and then call
    cls.start_browser()."""

    browser = None

    @classmethod
    def start_browser(cls):
        profile = tempfile.mkdtemp(prefix="chromium-")
        cls.addClassCleanup(shutil.rmtree, profile, True)
        cls.browser = start_chromium(profile)
        cls.addClassCleanup(cls.browser.quit)

    def run(self, result=None):
        # Every failure keeps what the browser showed.  Wrapped here, not
        # in setUp: unittest looks the test method up before setUp runs.
        name = self._testMethodName
        method = getattr(self, name)

        @functools.wraps(method)
        def wrapped():
            try:
                return method()
            except BaseException:
                self.keep_evidence(name)
                raise
        setattr(self, name, wrapped)
        return super().run(result)

    def keep_evidence(self, name):
        try:
            d = new_dir("browser-" + name)
            self.browser.save_screenshot(os.path.join(d, "screenshot.png"))
            with open(os.path.join(d, "page.html"), "w", encoding="utf-8") as f:
                f.write(f"<!-- {self.browser.current_url} -->\n" + self.browser.page_source)
            with open(os.path.join(d, "console.json"), "w", encoding="utf-8") as f:
                json.dump(self.console(), f, indent=1)
            sys.stderr.write(f"\n{name}: screenshot and page kept in {d}\n")
        except WebDriverException as e:
            sys.stderr.write(f"\n{name}: no screenshot: {e}\n")

    def console(self):
        try:
            return self.browser.get_log("browser")
        except (WebDriverException, ValueError):
            return []

    # -- navigation and waiting

    def open(self, path):
        self.browser.get(self.srv.base + path)
        self.wait_loaded()

    def wait_until(self, predicate, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except (NoSuchElementException, StaleElementReferenceException) as e:
                last = e
            time.sleep(0.05)
        self.fail(f"timed out waiting for {what} on {self.browser.current_url}"
                  f" ({last or 'condition false'})")

    def wait_loaded(self):
        """The document is complete and its module has run (the navigation
        that fits the visitor is shown once setupPage has finished)."""
        self.wait_until(lambda: self.browser.execute_script(
            "return document.readyState === 'complete' &&"
            " [...document.querySelectorAll('[data-when]')].some(e => !e.hidden)"),
            "the page to load")

    def wait_path(self, path):
        return self.wait_until(
            lambda: re.sub(r"^https?://[^/]+", "", self.browser.current_url).split("?")[0] == path,
            f"the path {path}")

    # -- finding things as a person does

    def field(self, label):
        """The control a <label> with this text names."""
        lab = self.browser.find_element(
            By.XPATH, f"//label[normalize-space()={xpath_literal(label)}]")
        return self.browser.find_element(By.ID, lab.get_attribute("for"))

    def fill(self, label, value):
        el = self.field(label)
        if el.tag_name == "select":
            el.find_element(By.XPATH, f".//option[@value={xpath_literal(value)}]").click()
        elif el.get_attribute("type") == "date":
            # Date inputs take keystrokes in the locale's order: set the
            # value as a script would, then tell the page.
            self.browser.execute_script(
                "arguments[0].value = arguments[1];"
                " arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", el, value)
        else:
            el.clear()
            el.send_keys(value)
        return el

    def check(self, label, on=True):
        el = self.field(label)
        if el.is_selected() != on:
            el.click()

    def visible(self, xpath):
        for el in self.browser.find_elements(By.XPATH, xpath):
            if el.is_displayed():
                return el
        return None

    def button(self, text):
        return self.wait_until(
            lambda: self.visible(f"//button[normalize-space()={xpath_literal(text)}]"),
            f"a button '{text}'")

    def press(self, text):
        self.button(text).click()

    def link(self, text):
        return self.wait_until(
            lambda: self.visible(f"//a[normalize-space()={xpath_literal(text)}]"),
            f"a link '{text}'")

    def heading(self):
        return self.browser.find_element(By.TAG_NAME, "h1").text

    def status_text(self, says=None):
        """The text of the visible role=status notice, once there is one
        (and, with says, once it says that: a page shows "working..."
        notices while its request is in flight)."""
        def current():
            el = self.visible("//*[@role='status']")
            text = el.text if el and el.text else None
            return text if text and (says is None or says in text) else None
        return self.wait_until(current, f"a status message{' saying ' + repr(says) if says else ''}")

    def error_summary(self):
        """The entries of the error summary, once it is shown."""
        box = self.wait_until(lambda: self.visible("//*[contains(@class,'error-summary')]"),
                              "the error summary")
        return [li.text for li in box.find_elements(By.TAG_NAME, "li")]

    def cookie(self, name):
        c = self.browser.get_cookie(name)
        return c["value"] if c else None

    # -- accessibility

    def assertAccessible(self, what=None):
        """axe-core finds no serious or critical violation on the page."""
        with open(AXE_JS, encoding="utf-8") as f:
            self.browser.execute_script(f.read())
        violations = self.browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            "  .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
            "    help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
            "  .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));")
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        self.assertEqual(bad, [], f"axe on {what or self.browser.current_url}")
