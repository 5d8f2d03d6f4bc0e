"""Drive the web console with a real headless Chromium (selenium + Debian's chromedriver).

Run by tests/lab/test_console_lab.py inside the lab's client namespace
(``ip netns exec PREFIXclient python -m tests.lab.console_browser ...``), so the
browser reaches only lab addresses. Prints one JSON object on stdout:

    {"before": {...page state...}, "csrf_attempt": {...}, "after": {...},
     "command_result": "...", "screenshots": [...]}

or {"error": "..."} with exit code 1. Modes:
  browser    log in, read the page, try a CSRF from a foreign page, click switchover
  bad-input  plain HTTP requests: no session, wrong token, missing/wrong CSRF token
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1200,1400",
)


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # the page may be re-rendering
            last = error
        time.sleep(0.2)
    raise TimeoutError(f"{what} not seen within {timeout:g}s (last: {last!r})")


def act(what: str, action: Callable[[], object]) -> None:
    """Do one user action, again if the page re-rendered the element under it.

    A live page redraws on every state push; an element found just before a
    redraw is stale, and selenium raises instead of acting, so a retry acts once.
    """
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> bool:
        try:
            action()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(what, attempt, 10)


def page_state(driver: Any) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    def text(css: str) -> str:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)

    def rows(table: str) -> list[list[str]]:
        return [
            [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
        ]

    return {
        "self": {
            k: text(f"#self .{k}") for k in ("name", "role", "mode", "epoch", "candidate", "plan")
        },
        "peer": {k: text(f"#peer .{k}") for k in ("name", "role", "mode", "epoch", "heard")},
        "vip": text("#vip"),
        "freshness": text("#freshness"),
        "networks": rows("networks"),
        "resources": rows("resources"),
        "sync": rows("sync"),
        "sync_summary": text("#sync-summary"),
        "recent": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#recent li")],
        "switchover_enabled": driver.find_element(By.ID, "switchover").is_enabled(),
    }


def settled(state: dict[str, Any]) -> bool:
    """The page shows a formed pair: roles known, every uplink healthy, resources checked."""
    return (
        {state["self"]["role"], state["peer"]["role"]} == {"ACTIVE", "STANDBY"}
        and state["freshness"] == "live"
        and len(state["networks"]) == 2
        and all(row[1] == "healthy" and row[2] == "healthy" for row in state["networks"])
        and bool(state["resources"])
        and all(row[1] != "unknown" for row in state["resources"])
    )


def browser(base: str, token: str, shots: Path) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="mqconsole-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    out: dict[str, Any] = {"screenshots": []}

    def shot(name: str) -> None:
        path = shots / f"{name}.png"
        driver.save_screenshot(str(path))
        out["screenshots"].append(str(path))

    try:
        driver.set_page_load_timeout(20)
        driver.get(base + "/")
        out["redirected_to"] = driver.current_url
        act("type a wrong token", lambda: driver.find_element(By.ID, "token").send_keys("00" * 32))
        act("press login", lambda: driver.find_element(By.ID, "login").click())
        out["wrong_token_message"] = wait_for(
            "the login page's message", lambda: driver.find_element(By.ID, "message").text, 10
        )
        act("type the token", lambda: driver.find_element(By.ID, "token").send_keys(token))
        act("press login", lambda: driver.find_element(By.ID, "login").click())
        wait_for(
            "the page's first live state",
            lambda: driver.execute_script("return document.body.dataset.loaded"),
            15,
        )
        out["before"] = wait_for(
            "the settled pair on the page (both roles, all uplinks, the resources)",
            lambda: settled(s := page_state(driver)) and s,
            20,
        )
        cookies = driver.get_cookies()
        out["cookie"] = [
            {k: c.get(k) for k in ("name", "httpOnly", "sameSite")}
            for c in cookies
            if c["name"] == "mqconsole"
        ]
        shot("1-console")

        # A CSRF attempt: a foreign page (opaque origin) auto-posts a switchover.
        action = base + "/api/command"
        evil = (
            "<!doctype html><form method=post enctype=text/plain action='"
            + action
            + '\'><input name=\'{"command":"switchover","x":"\' value=\'"}\'></form>'
            "<script>document.forms[0].submit()</script>"
        )
        driver.get("data:text/html," + urllib.parse.quote(evil))
        time.sleep(2)
        out["csrf_attempt"] = {"landed_on": driver.current_url, "body": driver.page_source[:300]}
        driver.get(base + "/")
        out["after_csrf_attempt"] = wait_for(
            "the page again",
            lambda: (s := page_state(driver))["self"]["role"] not in ("", "-") and s,
            15,
        )

        wait_for("switchover enabled", lambda: page_state(driver)["switchover_enabled"], 10)
        out["clicked_at"] = time.time()
        act("press switchover", lambda: driver.find_element(By.ID, "switchover").click())
        alert = wait_for("the confirmation dialog", lambda: driver.switch_to.alert, 5)
        out["confirm_text"] = alert.text
        alert.accept()
        out["command_result"] = wait_for(
            "the command's answer",
            lambda: (
                (t := driver.find_element(By.ID, "command-result").text).endswith("…") is False
                and t
            ),
            15,
        )
        out["after"] = wait_for(
            "this node shown as STANDBY",
            lambda: (
                (s := page_state(driver))["self"]["role"] == "STANDBY"
                and s["peer"]["role"] == "ACTIVE"
                and s
            ),
            30,
        )
        shot("2-after-switchover")
    finally:
        driver.quit()
    return out


def bad_input(base: str, token: str) -> dict[str, Any]:
    """Plain HTTP from the client: what a console without a valid session or CSRF gets."""
    url = urllib.parse.urlsplit(base)
    host, port = url.hostname or "", url.port or 80
    origin = f"http://{url.netloc}"

    def ask(method: str, path: str, body: str = "", **headers: str) -> tuple[int, dict[str, str]]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(
                method, path, body=body.encode() if method == "POST" else None, headers=headers
            )
            response = conn.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    form = "application/x-www-form-urlencoded"
    out: dict[str, Any] = {}
    out["page_without_session"] = ask("GET", "/")[0]
    out["status_without_session"] = ask("GET", "/api/status")[0]
    command = json.dumps({"command": "switchover"})
    out["command_without_session"] = ask(
        "POST", "/api/command", command, Origin=origin, **{"Content-Type": "application/json"}
    )[0]
    out["wrong_token"] = ask(
        "POST", "/login", "token=" + "ab" * 32, Origin=origin, **{"Content-Type": form}
    )[0]
    status, headers = ask(
        "POST", "/login", f"token={token}", Origin=origin, **{"Content-Type": form}
    )
    out["good_token"] = status
    cookie = headers.get("set-cookie", "").split(";")[0]
    json_headers = {"Cookie": cookie, "Content-Type": "application/json", "Origin": origin}
    out["csrf_missing"] = ask("POST", "/api/command", command, **json_headers)[0]
    out["csrf_wrong"] = ask(
        "POST", "/api/command", command, **json_headers, **{"X-CSRF-Token": "x" * 43}
    )[0]
    page_conn = http.client.HTTPConnection(host, port, timeout=10)
    page_conn.request("GET", "/", headers={"Cookie": cookie})
    page = page_conn.getresponse().read().decode()
    page_conn.close()
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
    out["cross_origin_with_csrf"] = ask(
        "POST",
        "/api/command",
        command,
        **{**json_headers, "Origin": "http://10.231.1.100:8080"},
        **{"X-CSRF-Token": csrf.group(1) if csrf else ""},
    )[0]
    out["foreign_host"] = ask("GET", "/login", Host=f"evil.example:{port}")[0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("browser", "bad-input"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--shots", default=tempfile.gettempdir())
    args = parser.parse_args()
    try:
        if args.mode == "browser":
            result = browser(args.url.rstrip("/"), args.token, Path(args.shots))
        else:
            result = bad_input(args.url.rstrip("/"), args.token)
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
