"""A real browser on an LLMGateway's chat page: Debian's Chromium, driven by Playwright, reaching
only the page's own address.

Chromium is the machine's (`/usr/bin/chromium`, installed by e2e/cluster/install-node-deps.sh);
Playwright never downloads a browser of its own. Every request the page makes to another origin is
aborted before it leaves and recorded in `ChatPage.blocked`; Chromium's own background connections
(updates, sync, field trials) are switched off by its flags.

The selectors are Open WebUI's (0.12): `#email`/`#password` on /auth, `#chat-input` (a
contenteditable editor), `#send-message-button`, and the answers in `.chat-assistant`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox",  # runs as root here; the sandbox refuses root
                  "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps",
                  "--disable-features=OptimizationHints,MediaRouter,Translate"]


def chromium_problem() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: `make cluster-tools` installs Debian's chromium"
    try:
        import playwright  # noqa: F401 - whether it is installed is the question
    except ImportError:
        return "playwright is missing: `make venv` installs the test dependencies"
    return None


class ChatPage:
    """One headless Chromium on the page at `origin` (scheme://host:port)."""

    def __init__(self, origin: str):
        from playwright.sync_api import sync_playwright

        self.origin = origin.rstrip("/")
        self.blocked: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="chat-page-browser-")
        self._playwright = sync_playwright().start()
        self._context = self._playwright.chromium.launch_persistent_context(
            self._profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800})
        self._context.route("**/*", self._only_the_page)
        self.page = self._context.pages[0] if self._context.pages else self._context.new_page()

    def _only_the_page(self, route) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url == self.origin or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def visitor_get(self, path: str, timeout: float = 60) -> tuple[int, str]:
        """(status, body) of a GET the page makes for a visitor who has not signed in (no token,
        no cookie): what anyone who reaches the page can read."""
        self.page.goto(self.origin + "/auth", timeout=timeout * 1000)
        return tuple(self.page.evaluate("""async (path) => {
            const response = await fetch(path, {credentials: 'omit'});
            return [response.status, await response.text()];
        }""", path))

    def sign_in(self, email: str, password: str, timeout: float = 60) -> None:
        self.page.goto(self.origin + "/auth", timeout=timeout * 1000)
        self.page.fill("#email", email)
        self.page.fill("#password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector("#chat-input", timeout=timeout * 1000)

    def _dismiss_release_notes(self) -> None:
        """Open WebUI shows its release notes once per browser profile, over the chat."""
        button = self.page.get_by_role("button", name="Okay, Let's Go!")
        try:
            button.wait_for(timeout=5000)
        except Exception:  # noqa: BLE001 - not shown: nothing to dismiss
            return
        button.click()

    def signed_in_get(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET the page makes with the signed-in user's token."""
        return tuple(self.page.evaluate("""async (path) => {
            const response = await fetch(path, {headers: {Authorization: 'Bearer ' + localStorage.token}});
            return [response.status, await response.text()];
        }""", path))

    def model_ids(self) -> list[str]:
        """The models the page offers, as its own API lists them to the signed-in user."""
        return self.page.evaluate("""async () => {
            const response = await fetch('/api/models', {headers: {Authorization: 'Bearer ' + localStorage.token}});
            return (await response.json()).data.map(model => model.id);
        }""")

    def ask(self, model: str, message: str, timeout: float = 120) -> str:
        """Opens a new chat with `model`, sends `message`, and returns the answer's text once it has
        stopped changing."""
        self.page.goto(f"{self.origin}/?model={model}")
        self.page.wait_for_selector("#chat-input", timeout=timeout * 1000)
        self._dismiss_release_notes()
        self.page.click("#chat-input")
        self.page.keyboard.type(message)
        self.page.click("#send-message-button")
        answer = self.page.locator(".chat-assistant").last
        answer.wait_for(timeout=timeout * 1000)
        deadline, text, stable_since = time.monotonic() + timeout, "", time.monotonic()
        while time.monotonic() < deadline:
            current = answer.inner_text().strip()
            if current != text:
                text, stable_since = current, time.monotonic()
            elif text and time.monotonic() - stable_since > 3:
                return text
            time.sleep(0.5)
        raise TimeoutError(f"no finished answer from {model} after {timeout}s (last text: {text!r})")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self._context.close()
        self._playwright.stop()
        shutil.rmtree(self._profile, ignore_errors=True)
