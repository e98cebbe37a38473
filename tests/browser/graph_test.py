#!/usr/bin/env python3
"""The /graph page in headless Chromium (issue 13, part 5).

Starts sluice-ingress in front of two versions of one service (Python
upstreams on port 0; v2 answers every fifth request with a 500), drives
traffic, loads /graph from the admin port and waits, on the page's own
state, until both version edges are drawn with plausible rates and the v2
edge is marked as failing. Clicking that edge must show its 500s. A
screenshot is saved as an artifact either way.

usage: graph_test.py SLUICE_INGRESS ARTIFACT_DIR
Exit 0: passed; 1: failed; 77: skipped (no Chromium or selenium here).
"""

import http.server
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.common.exceptions import (ElementClickInterceptedException,
                                            StaleElementReferenceException, TimeoutException)
except ImportError:
    print("skipped: python3-selenium is not installed")
    sys.exit(77)

REQUESTS = 200
HOST = "reviews.example.com"


def upstream(name, fail_every):
    """An HTTP server on 127.0.0.1:0; every `fail_every`-th answer is a 500."""
    count = [0]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with lock:
                count[0] += 1
                n = count[0]
            status = 500 if fail_every and n % fail_every == 0 else 200
            body = name.encode()
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def config(v1_port, v2_port):
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1_port}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2_port}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: {HOST}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - {{destination: {{host: {HOST}, subset: v1, port: {{number: 9080}}}}, weight: 50}}
    - {{destination: {{host: {HOST}, subset: v2, port: {{number: 9080}}}}, weight: 50}}
"""


def read_port(proc, prefix):
    """The bound port of the first stdout line starting with `prefix`."""
    for line in proc.stdout:
        if line.startswith(prefix):
            return int(line.rsplit(":", 1)[1])
        if line.startswith("ready"):
            break
    raise RuntimeError(f"no '{prefix}' line from sluice-ingress")


def chromium():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,800"):
        options.add_argument(arg)
    if os.path.exists("/usr/bin/chromium"):
        options.binary_location = "/usr/bin/chromium"
    service = Service(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


# The drawn version edges, read in one script: the page redraws every 2 s,
# so element handles kept across calls would go stale.
READ_EDGES = """
const out = {};
for (const g of document.querySelectorAll('g.edge')) {
  const target = g.getAttribute('data-target');
  out[target.slice(target.lastIndexOf(':') + 1)] = {
    rps: parseFloat(g.getAttribute('data-rps')),
    error_percent: parseFloat(g.getAttribute('data-error-percent')),
    health: g.getAttribute('data-health'),
    cls: g.getAttribute('class')};
}
return out;
"""


def edges(driver):
    return driver.execute_script(READ_EDGES)


def click_edge(driver, version):
    """Clicks the label of the edge into `version`; False if it was redrawn meanwhile."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, f'g.edge[data-target$=":{version}"] text')
        if not found:
            return False
        try:
            found[0].click()
        except ElementClickInterceptedException:
            # Another label drawn over it: the click event itself, from script.
            driver.execute_script(
                "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", found[0])
        return True
    except StaleElementReferenceException:
        return False


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    if not os.path.exists("/usr/bin/chromium") or not os.path.exists("/usr/bin/chromedriver"):
        print("skipped: chromium and chromium-driver are not installed")
        return 77

    v1 = upstream("v1", 0)
    v2 = upstream("v2", 5)
    workdir = tempfile.mkdtemp(prefix="sluice-graph-")
    path = os.path.join(workdir, "reviews.yaml")
    with open(path, "w") as f:
        f.write(config(v1.server_address[1], v2.server_address[1]))
    proc = subprocess.Popen([binary, "--config", path, "--ephemeral-ports", "--bind", "127.0.0.1",
                             "--workers", "1", "--no-watch"],
                            stdout=subprocess.PIPE, text=True)
    driver = None
    try:
        gateway = read_port(proc, "listening 8080 ")
        admin = read_port(proc, "admin ")
        errors = 0
        for _ in range(REQUESTS):
            request = urllib.request.Request(f"http://127.0.0.1:{gateway}/")
            try:
                urllib.request.urlopen(request, timeout=10).read()
            except urllib.error.HTTPError as e:
                e.read()  # the 500s, counted by the gateway
                errors += 1
        print(f"{REQUESTS} requests sent, {errors} answered 500")

        driver = chromium()
        driver.get(f"http://127.0.0.1:{admin}/graph")
        # The page samples every 2 s and polls every 2 s: wait on what it
        # draws, never on a clock.
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)
        try:
            wait.until(lambda d: all(edges(d).get(v, {}).get("rps", 0) > 0 for v in ("v1", "v2")))
        except TimeoutException:
            data = urllib.request.urlopen(f"http://127.0.0.1:{admin}/graph.json", timeout=10).read()
            print(f"FAILED: the page never drew both version edges; graph.json: {data[:2000]!r}")
            return 1
        finally:
            driver.save_screenshot(os.path.join(artifacts, "graph.png"))
        seen = edges(driver)
        good, bad = seen["v1"], seen["v2"]
        print(f"v1: {good}; v2: {bad}")
        failures = []
        # REQUESTS over a window of at most 60 s, split roughly in half.
        if not (0 < good["rps"] <= REQUESTS and 0 < bad["rps"] <= REQUESTS):
            failures.append("implausible rates")
        if good["health"] != "healthy" or "health-healthy" not in good["cls"]:
            failures.append("the v1 edge is not marked healthy")
        if bad["health"] != "failure" or "health-failure" not in bad["cls"]:
            failures.append("the v2 edge is not marked failing")
        if not 10 <= bad["error_percent"] <= 30:
            failures.append(f"v2 error percentage {bad['error_percent']} is not near 20")
        # Clicking the failing edge shows its response codes.
        wait.until(lambda d: click_edge(d, "v2"))
        wait.until(lambda d: (d.find_element(By.ID, "details").get_attribute("data-edge") or "")
                   .endswith(":v2") and "500" in d.find_element(By.ID, "details").text)
        driver.save_screenshot(os.path.join(artifacts, "graph.png"))
        if failures:
            print("FAILED: " + "; ".join(failures))
            return 1
        print(f"passed; screenshot in {os.path.join(artifacts, 'graph.png')}")
        return 0
    finally:
        if driver:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=30)
        v1.shutdown()
        v2.shutdown()


if __name__ == "__main__":
    sys.exit(main())
