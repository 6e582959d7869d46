"""What open dashboard tabs cost an ``errand serve``: the requests per second one tab adds
(read from the server's ``/metrics``), and the no-op drain of ``python -m errand bench`` with no
tab open against ten tabs on the task list.

    ERRAND_BIN=target/release/errand target/py-venv/bin/python python/examples/dashboard_cost.py

It starts its own server (SQLite, a temp directory, a free loopback port) and Debian's Chromium
(``/usr/bin/chromium``) through Playwright, and prints one JSON object per measurement."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ERRAND_BIN", REPO / "target" / "release" / "errand"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def requests_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(m.group(1)) for m in
               re.finditer(r'^errand_http_requests_total\{[^}]*route="/v1[^}]*\} (\S+)$', text, re.M))


def token(data: Path, *args: str) -> str:
    out = subprocess.run([str(BIN), "token", "--data-dir", str(data), *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def bench(url: str, data: Path, jobs: int) -> dict[str, object]:
    env = {**os.environ, "ERRAND_URL": url, "ERRAND_TOKEN": token(data, "--worker", "bench"),
           "ERRAND_USER_TOKEN": token(data, "--user", "alice")}
    out = subprocess.run([sys.executable, "-m", "errand", "bench", "--jobs", str(jobs),
                          "--concurrency", "64"], env=env, capture_output=True, text=True,
                         check=True, cwd=REPO / "python")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    jobs = int(os.environ.get("JOBS", "5000"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        log = open(Path(tmp) / "serve.log", "wb")
        serve = subprocess.Popen([str(BIN), "serve", "--addr", "127.0.0.1:0", "--data-dir",
                                  str(data), "--no-reference-tasks"],
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert serve.stdout is not None
            url = serve.stdout.readline().removeprefix("errand listening on ").strip()
            link = f"{url}/ui/#token={token(data, '--user', 'alice')}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                tab = browser.new_page()
                tab.goto(link)
                tab.wait_for_selector("#counts button")
                before, began = requests_total(url), time.monotonic()
                time.sleep(10)
                per_tab = (requests_total(url) - before) / (time.monotonic() - began)
                print(json.dumps({"measure": "requests_per_s_per_open_tab",
                                  "view": "task list, first page", "value": round(per_tab, 2)}))
                tab.close()
                for tabs in (0, 10, 0, 10):
                    pages = [browser.new_page() for _ in range(tabs)]
                    for page in pages:
                        page.goto(link)
                        page.wait_for_selector("#counts button")
                    result = bench(url, data, jobs)
                    print(json.dumps({"measure": "drain_with_tabs", "tabs": tabs, **result}))
                    for page in pages:
                        page.close()
                browser.close()
        finally:
            serve.terminate()
            serve.wait(10)


if __name__ == "__main__":
    main()
