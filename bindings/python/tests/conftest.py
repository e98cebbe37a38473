import pathlib
import urllib.error
import urllib.request

import pytest

BOOKINFO = pathlib.Path(__file__).resolve().parents[3] / "examples" / "ingress" / "bookinfo"


def get(url, headers=None, method="GET"):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture
def bookinfo_yaml():
    """Bookinfo's Gateway, DestinationRules and the jason VirtualService, with
    the reviews endpoints on the given ports."""

    def render(v1, v2, v3=None):
        docs = []
        for name in ["bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml"]:
            docs.append((BOOKINFO / name).read_text())
        v3 = v3 or v1
        docs.append(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{app: reviews, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{app: reviews, version: v2}}}}
  - {{address: 127.0.0.1, ports: {{http: {v3}}}, labels: {{app: reviews, version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: productpage}}
spec:
  hosts: [productpage]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{app: productpage, version: v1}}}}
""")
        return "\n---\n".join(docs)

    return render
