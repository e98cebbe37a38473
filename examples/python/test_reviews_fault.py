"""Copy this file into your project to test an Istio VirtualService in-process.

Run with `pytest -p sluice.testing` (or add `pytest_plugins = ["sluice.testing"]`
to your conftest.py). It needs only `pip install sluice` (bindings/python).
"""

import urllib.error
import urllib.request

ROUTING = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: [bookinfo.example.com]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings}}
spec:
  hosts: [ratings]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ratings_port}}}}}]
---
# Istio's fault injection task: jason's requests to ratings are aborted.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings}}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    fault: {{abort: {{httpStatus: 500, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: ratings}}}}]
  - route: [{{destination: {{host: ratings}}}}]
"""


def fetch(url, headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_jason_gets_the_injected_fault(sluice_gateway, fake_upstream):
    ratings = fake_upstream(body='{"stars": 5}')
    gateway = sluice_gateway(ROUTING.format(ratings_port=ratings.port), seed=1)
    url = gateway.url(8080) + "/ratings/0"  # 8080: the Gateway server's port

    assert fetch(url, {"host": "bookinfo.example.com"}) == (200, b'{"stars": 5}')
    status, _ = fetch(url, {"host": "bookinfo.example.com", "end-user": "jason"})
    assert status == 500
    assert len(ratings.requests) == 1  # the aborted request never reached ratings

    why = gateway.explain("GET", "http://bookinfo.example.com:8080/ratings/0", {"end-user": "jason"})
    assert why["virtual_service"] == "ratings" and why["rule"] == 0
