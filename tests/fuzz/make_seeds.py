#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/.

The seeds are committed; rerun this after changing it (it replaces the
generated files and keeps nothing else). Inputs follow each target's format
(see the comment at the top of each fuzz_<target>.cpp):
  request_parser, response_parser: fragmentation byte, flags byte, stream
  session: flags byte, fragmentation byte, client bytes "@@UPSTREAM@@" reply
  path: the request target
  client_hello: TLS records
  istio: YAML
  h2_session: fragmentation byte, flags byte, HTTP/2 client frames
  router, xfcc: FuzzedDataProvider bytes (arbitrary; seeds only start things)
"""

import hashlib
import pathlib
import random
import re
import shutil
import ssl

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"


def write(target, items):
    d = CORPUS / target
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for name, data in items:
        if isinstance(data, str):
            data = data.encode("latin-1")
        (d / name).write_bytes(data)
    print(f"{target}: {len(items)} seeds")


def crlf(s):
    return s.replace("\n", "\r\n")


# --- HTTP requests --------------------------------------------------------

REQUESTS = {
    "get": "GET / HTTP/1.1\nHost: a.example\n\n",
    "get_10": "GET /x HTTP/1.0\n\n",
    "post_length": "POST /p HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello",
    "post_chunked": "POST /p HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n"
    "5\nhello\n6;ext=1\n world\n0\nTrailer-A: 1\n\n",
    "pipelined": "GET /1 HTTP/1.1\nHost: a\n\nGET /2 HTTP/1.1\nHost: a\nContent-Length: 2\n\nokGET /3 HTTP/1.1\nHost: a\n\n",
    "smuggle_cl_te": "POST / HTTP/1.1\nHost: a\nContent-Length: 6\nTransfer-Encoding: chunked\n\n0\n\nGET /admin HTTP/1.1\nHost: a\n\n",
    "smuggle_te_cl": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 3\n\n1\nA\n0\n\n",
    "connection_content_length": "POST / HTTP/1.1\nHost: a\nConnection: content-length\nContent-Length: 4\n\nbody",
    "connection_te": "POST / HTTP/1.1\nHost: a\nConnection: transfer-encoding, close\nTransfer-Encoding: chunked\n\n0\n\n",
    "te_gzip": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n\nabc",
    "te_chunked_gzip": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, gzip\n\n0\n\n",
    "te_twice": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n0\n\n",
    "te_http10": "POST / HTTP/1.0\nHost: a\nTransfer-Encoding: chunked\n\n0\n\n",
    "te_space": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding : chunked\n\n0\n\n",
    "te_vtab": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding:\x0bchunked\n\n0\n\n",
    # Found by this fuzzer: an empty Transfer-Encoding was accepted.
    "te_empty": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding:\n\n3\nabc\n0\n\n",
    "te_empty_cl": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: \nContent-Length: 4\n\nabcd",
    "cl_twice": "POST / HTTP/1.1\nHost: a\nContent-Length: 3\nContent-Length: 4\n\nabcd",
    "cl_list": "POST / HTTP/1.1\nHost: a\nContent-Length: 3, 3\n\nabc",
    "cl_plus": "POST / HTTP/1.1\nHost: a\nContent-Length: +3\n\nabc",
    "cl_huge": "POST / HTTP/1.1\nHost: a\nContent-Length: 99999999999999999999999\n\n",
    "http20": "GET / HTTP/2.0\nHost: a\n\n",
    "http09": "GET /\n\n",
    "http11_v2": "GET / HTTP/1.2\nHost: a\n\n",
    "connect": "CONNECT a.example:443 HTTP/1.1\nHost: a.example:443\n\n\x16\x03\x01",
    "upgrade": "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n\nframes",
    "upgrade_h2c": "GET / HTTP/1.1\nHost: a\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\n\n",
    "chunk_bad_hex": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\nzz\nhello\n0\n\n",
    "chunk_overflow": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\nfffffffffffffffff\nx\n0\n\n",
    "chunk_no_crlf": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n3\nabcX0\n\n",
    "chunk_lf_only": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    "chunk_ext_quoted": "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n3;a=\"b;c\"\nabc\n0\n\n",
    "absolute_form": "GET http://b.example:8080/x?y=1 HTTP/1.1\nHost: a\n\n",
    "absolute_userinfo": "GET http://u@b.example/ HTTP/1.1\nHost: a\n\n",
    "asterisk": "OPTIONS * HTTP/1.1\nHost: a\n\n",
    "asterisk_get": "GET * HTTP/1.1\nHost: a\n\n",
    "host_twice": "GET / HTTP/1.1\nHost: a\nHost: b\n\n",
    "host_missing": "GET / HTTP/1.1\nX: y\n\n",
    "host_bad": "GET / HTTP/1.1\nHost: a/b@c\n\n",
    "obs_fold": "GET / HTTP/1.1\nHost: a\nX-Folded: one\n two\n\n",
    "space_before_colon": "GET / HTTP/1.1\nHost : a\n\n",
    "nul_in_header": "GET / HTTP/1.1\nHost: a\nX: a\x00b\n\n",
    "fragment": "GET /a#frag HTTP/1.1\nHost: a\n\n",
    "dotdot": "GET /a/../../etc/passwd HTTP/1.1\nHost: a\n\n",
    "encoded_dots": "GET /a/%2e%2E/%2F/b%5Cc%00 HTTP/1.1\nHost: a\n\n",
    "expect": "POST / HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 3\n\nabc",
    "lf_only": "GET / HTTP/1.1\nHost: a\n\n",
    "many_headers": "GET / HTTP/1.1\nHost: a\n" + "".join(f"X-{i}: {i}\n" for i in range(40)) + "\n",
    "long_target": "GET /" + "a" * 300 + " HTTP/1.1\nHost: a\n\n",
    "keep_alive_close": "GET / HTTP/1.1\nHost: a\nConnection: close\n\nGET /after HTTP/1.1\nHost: a\n\n",
    "head": "HEAD / HTTP/1.1\nHost: a\n\n",
    "method_lower": "get / HTTP/1.1\nHost: a\n\n",
}

request_seeds = []
for name, text in REQUESTS.items():
    wire = text if "\r" in text else crlf(text)
    for frag, flags in ((0, 0), (5, 0), (9, 0x80)):
        request_seeds.append((f"{name}_{frag}", bytes([frag, flags]) + wire.encode("latin-1")))
    if name in ("get", "post_chunked", "smuggle_cl_te"):  # LF-only variants
        request_seeds.append((f"{name}_lf", bytes([3, 0]) + text.encode("latin-1")))

# --- HTTP responses -------------------------------------------------------

RESPONSES = {
    "length": "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
    "chunked": "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n0\nX-Trailer: 1\n\n",
    "close_delimited": "HTTP/1.1 200 OK\n\nuntil close",
    "http10": "HTTP/1.0 200 OK\nContent-Length: 2\n\nok",
    "no_content_with_length": "HTTP/1.1 204 No Content\nContent-Length: 5\n\nHTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "not_modified": "HTTP/1.1 304 Not Modified\nContent-Length: 10\n\n",
    "switching": "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n\nraw",
    "continue": "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Length: 1\n\nx",
    "early_hints": "HTTP/1.1 103 Early Hints\nLink: </a>\n\nHTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "status_99": "HTTP/1.1 99 Odd\nContent-Length: 0\n\n",
    "status_600": "HTTP/1.1 600 Odd\nContent-Length: 0\n\n",
    "status_000": "HTTP/1.1 000 Zero\n\n",
    "no_reason": "HTTP/1.1 200\nContent-Length: 0\n\n",
    "cl_te": "HTTP/1.1 200 OK\nContent-Length: 3\nTransfer-Encoding: chunked\n\n0\n\n",
    "cl_twice": "HTTP/1.1 200 OK\nContent-Length: 1\nContent-Length: 2\n\nab",
    "te_gzip": "HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\nabc",
    "bad_chunk": "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nxyz\n",
    "keep_alive_two": "HTTP/1.1 200 OK\nContent-Length: 1\n\naHTTP/1.1 404 Not Found\nContent-Length: 2\n\nno",
    "connection_content_length": "HTTP/1.1 200 OK\nConnection: content-length\nContent-Length: 2\n\nok",
    "http2": "HTTP/2.0 200 OK\nContent-Length: 0\n\n",
    "garbage": "SSH-2.0-OpenSSH_9.2\n",
    "header_nul": "HTTP/1.1 200 OK\nX: a\x00b\nContent-Length: 0\n\n",
    "long_reason": "HTTP/1.1 200 " + "R" * 300 + "\nContent-Length: 0\n\n",
}

response_seeds = []
for name, text in RESPONSES.items():
    wire = crlf(text)
    for frag, flags in ((0, 0), (6, 0), (9, 0x80)):
        response_seeds.append((f"{name}_{frag}", bytes([frag, flags]) + wire.encode("latin-1")))
    # The same response answering HEAD (flags bit 0: the first message).
    response_seeds.append((f"{name}_head", bytes([4, 0x01]) + wire.encode("latin-1")))

# --- Paths ----------------------------------------------------------------

PATHS = [
    "/", "/a/b/c", "/a/./b/../c", "/../../etc/passwd", "/a/..", "/a/.", "/.", "/..",
    "/%2e%2e/%2E%2e/x", "/a%2fb%2Fc", "/a%5cb%5Cc", "/a\\b\\..\\c", "//a///b//", "/a//../b",
    "/%00", "/%0", "/%", "/%zz", "/%7e%7Euser", "/%41%42%2d%5f", "/%25%32%65", "/%252e%252e/",
    "/a?b=../c&d=%2e", "/a/%2E./b", "/.../a", "/..a/b", "/a/b/..?q", "a/b", "", "?x",
    "/caf%C3%A9", "/\x80\xff", "/a;b/../c", "/./././", "/a/b/c/../../../../d",
]
path_seeds = [(f"path_{i:02d}", p) for i, p in enumerate(PATHS)]

# --- Session --------------------------------------------------------------


def session(flags, frag, client, reply):
    return bytes([flags, frag]) + crlf(client).encode("latin-1") + b"@@UPSTREAM@@" + \
        crlf(reply).encode("latin-1")


OK = "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"
SESSIONS = {
    "get": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\n", OK),
    "get_split": (0x21, 3, "GET /split HTTP/1.1\nHost: a\nUser-Agent: fuzz\n\n", OK),
    "get_bytewise": (0x01, 0, "GET /b HTTP/1.1\nHost: a\n\n", OK),
    "post_length": (0x41, 5, "POST /p HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello", OK),
    "post_chunked": (0x61, 4, "POST /p HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n",
                     "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n"),
    "pipelined": (0x01, 0, "GET /1 HTTP/1.1\nHost: a\n\nGET /2 HTTP/1.1\nHost: a\n\n",
                  OK + "HTTP/1.1 200 OK\nContent-Length: 3\n\ntwo"),
    "direct": (0x01, 0, "GET /direct HTTP/1.1\nHost: a\n\n", ""),
    "redirect": (0x01, 0, "GET /redirect/x?y HTTP/1.1\nHost: a\n\n", ""),
    "mirror": (0x01, 0, "POST /mirror HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc", OK),
    "retry_503": (0x09, 0, "GET /retry HTTP/1.1\nHost: a\n\n",
                  "HTTP/1.1 503 Service Unavailable\nContent-Length: 0\n\n"),
    "retry_reset": (0x09, 0, "POST /retry HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi", ""),
    "rewrite": (0x01, 0, "GET /re/a/b HTTP/1.1\nHost: a\n\n", OK),
    "head_with_body": (0x01, 0, "HEAD / HTTP/1.1\nHost: a\n\n", OK),
    "smuggle_cl_te": (0x01, 0, "POST / HTTP/1.1\nHost: a\nContent-Length: 6\nTransfer-Encoding: chunked\n\n0\n\nGET /admin HTTP/1.1\nHost: a\n\n", OK),
    "connection_content_length": (0x01, 0, "POST / HTTP/1.1\nHost: a\nConnection: content-length\nContent-Length: 4\n\nbody", OK),
    "connection_names_host": (0x01, 0, "GET / HTTP/1.1\nHost: a\nConnection: host, x-remove, keep-alive\nX-Remove: 1\n\n", OK),
    "te_gzip": (0x01, 0, "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n\nabc", OK),
    "te_empty_cl": (0x01, 0, "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: \nContent-Length: 4\n\nabcd", OK),
    "http20": (0x01, 0, "GET / HTTP/2.0\nHost: a\n\n", OK),
    "connect": (0x01, 0, "CONNECT a.example:443 HTTP/1.1\nHost: a.example:443\n\n", OK),
    "upgrade_101": (0x01, 0, "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n\n",
                    "HTTP/1.1 101 Switching Protocols\nConnection: Upgrade\nUpgrade: websocket\n\nraw"),
    "bad_chunk": (0x01, 0, "POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\nzz\nhello\n0\n\n", OK),
    "half_close": (0x05, 0, "POST / HTTP/1.1\nHost: a\nContent-Length: 10\n\nshort", OK),
    "paths": (0x03, 0, "GET /a/../%2e%2e/b%2F..//c?x=/../ HTTP/1.1\nHost: a\n\n", OK),
    "up_status_99": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\n", "HTTP/1.1 99 Odd\nContent-Length: 0\n\n"),
    "up_100_then_200": (0x01, 0, "POST / HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 2\n\nhi",
                        "HTTP/1.1 100 Continue\n\n" + OK),
    "up_cl_te": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\n",
                 "HTTP/1.1 200 OK\nContent-Length: 3\nTransfer-Encoding: chunked\n\n0\n\n"),
    "up_close_delimited": (0x09, 7, "GET / HTTP/1.1\nHost: a\n\n", "HTTP/1.1 200 OK\n\nbody until close"),
    "up_connection_cl": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\n",
                         "HTTP/1.1 200 OK\nConnection: content-length, close\nContent-Length: 2\n\nok"),
    "up_204_body": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\nGET /2 HTTP/1.1\nHost: a\n\n",
                    "HTTP/1.1 204 No Content\nContent-Length: 5\n\nhello" + OK),
    "up_early": (0x11, 0, "POST / HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello", OK),
    "up_garbage": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\n", "SSH-2.0-x\n"),
    "up_header_crlf": (0x01, 0, "GET / HTTP/1.1\nHost: a\n\n",
                       "HTTP/1.1 200 OK\nX-A: b\rInjected: 1\nContent-Length: 0\n\n"),
    "up_short_body": (0x09, 0, "GET / HTTP/1.1\nHost: a\n\n", "HTTP/1.1 200 OK\nContent-Length: 100\n\nshort"),
}
session_seeds = [(f"session_{n}", session(*v)) for n, v in SESSIONS.items()]

# --- ClientHello ----------------------------------------------------------


def u16(n):
    return n.to_bytes(2, "big")


def u24(n):
    return n.to_bytes(3, "big")


def extension(kind, body):
    return u16(kind) + u16(len(body)) + body


def sni_ext(*names):
    entries = b"".join(b"\x00" + u16(len(n)) + n for n in names)
    return extension(0, u16(len(entries)) + entries)


def client_hello(extensions, records=1, version=b"\x03\x03"):
    body = version + bytes(range(32)) + b"\x00" + u16(4) + b"\x13\x01\xc0\x2f" + b"\x01\x00"
    if extensions is not None:
        ext = b"".join(extensions)
        body += u16(len(ext)) + ext
    msg = b"\x01" + u24(len(body)) + body
    # Split the handshake message over `records` records.
    out = b""
    step = max(1, -(-len(msg) // records))
    for i in range(0, len(msg), step):
        part = msg[i:i + step]
        out += b"\x16\x03\x01" + u16(len(part)) + part
    return out


alpn = extension(16, u16(9) + b"\x02h2\x08http/1.1")
versions = extension(43, b"\x04\x03\x04\x03\x03")
hello_seeds = [
    ("sni", client_hello([sni_ext(b"www.example.com"), alpn, versions])),
    ("sni_upper", client_hello([sni_ext(b"WWW.Example.COM")])),
    ("sni_two_records", client_hello([sni_ext(b"split.example.com"), alpn], records=2)),
    ("sni_many_records", client_hello([sni_ext(b"many.example.com")], records=9)),
    ("no_sni", client_hello([alpn])),
    ("no_extensions", client_hello(None)),
    ("empty_extensions", client_hello([])),
    ("sni_twice", client_hello([sni_ext(b"a.example"), sni_ext(b"b.example")])),
    ("sni_two_names", client_hello([sni_ext(b"a.example", b"b.example")])),
    ("sni_empty", client_hello([sni_ext(b"")])),
    ("sni_nul", client_hello([sni_ext(b"a\x00b.example")])),
    ("sni_long", client_hello([sni_ext(b"a" * 300)])),
    ("sni_only_header", client_hello([sni_ext(b"www.example.com")])[:5]),
    ("http", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("sslv2", b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10"),
    ("alert", b"\x15\x03\x03\x00\x02\x02\x28"),
]
try:
    # A real ClientHello from Python's TLS stack (OpenSSL), SNI in mixed case.
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname="Bookinfo.Example.com")
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello_seeds.append(("openssl", outgoing.read()))
except Exception as e:  # seeds above are enough without it
    print("no OpenSSL ClientHello:", e)

# --- Istio YAML -----------------------------------------------------------

istio_seeds = []
for d in (ROOT / "examples/ingress/bookinfo", ROOT / "tests/istio/data"):
    for f in sorted(d.glob("*.yaml")):
        istio_seeds.append((f"{d.name}_{f.stem}", f.read_bytes()))
bookinfo = b"---\n".join(f.read_bytes() for f in sorted((ROOT / "examples/ingress/bookinfo").glob("*.yaml")))
istio_seeds.append(("bookinfo_all", bookinfo))
# YAML embedded in the loader tests (raw strings holding apiVersion).
for f in sorted((ROOT / "tests/istio").glob("*.cpp")):
    text = f.read_text()
    for i, m in enumerate(re.finditer(r'R"(\w*)\((.*?)\)\1"', text, re.S)):
        body = m.group(2)
        if "apiVersion" in body or "pathNormalization" in body or "meshConfig" in body:
            if "{}" in body or "{0}" in body:
                continue  # fmt templates, not YAML yet
            istio_seeds.append((f"{f.stem}_{i:02d}", body.encode()))

# --- FuzzedDataProvider targets -------------------------------------------

rng = random.Random(20240601)
router_seeds = [(f"random_{i:02d}", bytes(rng.randrange(256) for _ in range(n)))
                for i, n in enumerate([16, 64, 128, 256, 512, 1024, 2048] * 3)]
xfcc_strings = [b"spiffe://cluster.local/ns/default/sa/client", b"client.example.com",
                b"a,b;c=d\"e\\f", b"x\r\nInjected: 1", b"CN=\"quoted\", O=Example"]
xfcc_seeds = [(f"random_{i:02d}", bytes(rng.randrange(256) for _ in range(n)))
              for i, n in enumerate([32, 96, 200, 400, 800] * 2)]
for i, s in enumerate(xfcc_strings):  # strings FuzzedDataProvider may pick up whole
    xfcc_seeds.append((f"names_{i}", (s + b"\\" + s + b"\\") * 3 + bytes(rng.randrange(256) for _ in range(32))))

# --- h2_session: HTTP/2 client frames ---------------------------------------


def h2_frame(kind, flags, stream, payload=b""):
    return u24(len(payload)) + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_literal(name, value):
    def s(x):
        x = x.encode() if isinstance(x, str) else x
        assert len(x) < 127
        return bytes([len(x)]) + x
    return b"\x00" + s(name) + s(value)


def h2_request(method="GET", path="/", authority="a.example", extra=()):
    block = h2_literal(":method", method) + h2_literal(":scheme", "http")
    block += h2_literal(":path", path) + h2_literal(":authority", authority)
    for n, v in extra:
        block += h2_literal(n, v)
    return block


def hpack_int(value, prefix_bits, first_byte):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = [first_byte | limit]
    value -= limit
    while value >= 128:
        out.append(value & 127 | 128)
        value >>= 7
    return bytes(out + [value])


def h2_indexed_literal(name_index, value):
    """A literal added to the dynamic table, so later heads can refer to it."""
    return hpack_int(name_index, 6, 0x40) + hpack_int(len(value), 7, 0) + value


def window_release_burst(streams):
    """Stream windows at 0 while many ~4 KiB answers queue, then one SETTINGS
    frame opens them all: the whole backlog leaves for 15 bytes in."""
    out = h2_frame(4, 0, 0, u16(4) + (0).to_bytes(4, "big"))
    out += h2_frame(8, 0, 0, (0x7fff0000).to_bytes(4, "big"))
    head = bytes([0x82, 0x86]) + h2_indexed_literal(4, b"/" + b"a" * 3990) + h2_indexed_literal(1, b"x")
    for i in range(streams):
        out += h2_frame(1, 5, 1 + 2 * i, head if i == 0 else bytes([0x82, 0x86, 0x80 | 63, 0x80 | 62]))
    return out + h2_frame(4, 0, 0, u16(4) + (65535).to_bytes(4, "big"))


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = h2_frame(4, 0, 0)
get1 = h2_frame(1, 5, 1, h2_request())
post3 = (h2_frame(1, 4, 3, h2_request("POST", "/up", extra=[("content-length", "5")]))
         + h2_frame(0, 0, 3, b"hel") + h2_frame(0, 1, 3, b"lo"))
trailers5 = (h2_frame(1, 4, 5, h2_request("POST", "/svc/M", extra=[("te", "trailers")]))
             + h2_frame(0, 0, 5, b"\x00\x00\x00\x00\x01x")
             + h2_frame(1, 5, 5, h2_literal("grpc-timeout", "1S")))
h2_session_seeds = [
    ("get", b"\x07\x01" + H2_SETTINGS + get1),
    ("get_bytewise", b"\x00\x01" + H2_SETTINGS + get1),
    ("preface_included", b"\x05\x00" + H2_PREFACE + H2_SETTINGS + get1),
    ("post_body", b"\x06\x01" + H2_SETTINGS + post3),
    ("trailers", b"\x06\x03" + H2_SETTINGS + trailers5),
    ("many_streams", b"\x08\x0d" + H2_SETTINGS
     + b"".join(h2_frame(1, 5, i, h2_request(path=f"/{i}")) for i in range(1, 40, 2))),
    ("rapid_reset", b"\x09\x09" + H2_SETTINGS
     + b"".join(h2_frame(1, 5, i, h2_request()) + h2_frame(3, 0, i, b"\x00\x00\x00\x08")
                for i in range(1, 60, 2))),
    ("continuation", b"\x04\x01" + H2_SETTINGS + h2_frame(1, 0, 1, h2_request())
     + b"".join(h2_frame(9, 0, 1, h2_literal("x-pad", "p" * 100)) for _ in range(12))),
    ("ping_settings", b"\x03\x01" + H2_SETTINGS
     + b"".join(h2_frame(6, 0, 0, b"12345678") + h2_frame(4, 0, 0) for _ in range(20))),
    ("cookies_hop", b"\x07\x01" + H2_SETTINGS + h2_frame(1, 5, 1, h2_request(extra=[
        ("cookie", "a=1"), ("cookie", "b=2"), ("connection", "close"), ("te", "gzip")]))),
    ("window_update", b"\x07\x01" + H2_SETTINGS + h2_frame(8, 0, 0, b"\x00\x01\x00\x00")
     + get1 + h2_frame(8, 0, 1, b"\x7f\xff\xff\xff")),
    ("goaway", b"\x07\x01" + H2_SETTINGS + get1 + h2_frame(7, 0, 0, b"\x00" * 8)),
    ("high_stream_id", b"\x07\x01" + H2_SETTINGS + h2_frame(1, 5, 0x7ffffffd, h2_request())),
    ("window_release_burst", b"\x07\x01" + window_release_burst(100)),
]

write("request_parser", request_seeds)
write("response_parser", response_seeds)
write("path", path_seeds)
write("session", session_seeds)
write("client_hello", hello_seeds)
write("istio", istio_seeds)
write("router", router_seeds)
write("xfcc", xfcc_seeds)
write("h2_session", h2_session_seeds)
