// libFuzzer target: the HTTP/2 server codec (lib/http2/codec.hpp) driven by
// fuzzed client bytes, answering every request the way the gateway would
// (head, body, sometimes trailers, sometimes a reset) and crediting request
// bodies as they arrive.
//
// Input: byte 0 = fragmentation seed (fuzz_check.hpp), byte 1 = flags
// (bit 0: prepend the client preface, bit 1: answer with trailers, bit 2:
// reset every third stream, bit 3: small limits), then the client's bytes.
//
// Checked besides sanitizers: open streams never exceed the concurrency
// limit; a request head carries a method, a target and a Host equal to its
// authority, with no connection-specific field and header totals within the
// limits; no event follows the end of a stream's request; once feed()
// refused, the codec stays refused; output stays bounded by what was
// answered plus a multiple of the input.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http/tokens.hpp"
#include "http2/codec.hpp"

namespace {

using sluice::http2::Event;
using sluice::http2::ServerSession;

struct StreamSeen {
  bool head = false;
  bool ended = false;
};

void check_head(const Event& e, const sluice::http2::Settings& s) {
  const auto& h = e.head;
  FUZZ_CHECK(!h.method.empty(), "request without a method on stream %d", e.stream);
  FUZZ_CHECK(!h.authority.empty(), "request without an authority");
  auto host = h.headers.get("host");
  FUZZ_CHECK(host && *host == h.authority, "Host differs from :authority");
  FUZZ_CHECK(h.headers.count("host") == 1, "more than one Host");
  FUZZ_CHECK(h.headers.count("cookie") <= 1, "cookie crumbs not joined");
  size_t bytes = 0;
  for (const auto& [n, v] : h.headers.entries()) {
    FUZZ_CHECK(!n.empty() && n[0] != ':', "a pseudo-header among the fields");
    for (std::string_view bad :
         {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"})
      FUZZ_CHECK(n != bad, "connection-specific field %s passed", n.c_str());
    // A token: compared without case (nghttp2 lets "Trailers" through).
    if (n == "te")
      FUZZ_CHECK(sluice::http::iequals(v, "trailers"), "te other than trailers passed");
    if (n != "cookie") bytes += n.size() + v.size();
  }
  FUZZ_CHECK(bytes <= s.max_header_list_bytes, "header list past the limit");
  FUZZ_CHECK(h.headers.size() <= s.max_headers + 1, "more fields than the limit");
  // :protocol only with the setting on, on a CONNECT, as a lower-case token.
  if (!e.protocol.empty()) {
    FUZZ_CHECK(s.enable_connect_protocol, ":protocol accepted while extended CONNECT is off");
    FUZZ_CHECK(h.method == "CONNECT", ":protocol on a %s", h.method.c_str());
    FUZZ_CHECK(!h.target.empty(), "an extended CONNECT without :path");
    for (char c : e.protocol) FUZZ_CHECK(c < 'A' || c > 'Z', ":protocol not lower-cased");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 256 * 1024) return 0;
  uint8_t frag = data[0], flags = data[1];
  std::string input;
  if (flags & 1) input = sluice::http2::kClientPreface;
  input.append(reinterpret_cast<const char*>(data + 2), size - 2);

  sluice::http2::Settings settings;
  if (flags & 8) {
    settings.max_concurrent_streams = 3;
    settings.max_header_list_bytes = 512;
    settings.max_headers = 8;
    settings.initial_stream_window = 1024;
    settings.premature_reset_min_streams = 4;
  }
  settings.enable_connect_protocol = flags & 16;
  ServerSession server(settings);
  std::map<int32_t, StreamSeen> seen;
  sluice::fuzz::Fragmenter fragmenter(frag);
  std::string out;
  bool refused = false;
  size_t pos = 0;
  int answered = 0;
  // Bytes the answers queued (a generous allowance per head and trailers):
  // one WINDOW_UPDATE or SETTINGS frame may release all of them at once.
  size_t queued = 0, total_in = 0, total_out = 0;
  while (pos < input.size()) {
    size_t n = fragmenter.next(input.size() - pos);
    bool ok = server.feed(std::string_view(input).substr(pos, n));
    pos += n;
    total_in += n;
    if (refused) FUZZ_CHECK(!ok, "feed() accepted bytes after refusing");
    refused = refused || !ok;
    FUZZ_CHECK(server.open_streams() <= settings.max_concurrent_streams + 1, "%zu open streams",
               server.open_streams());
    for (auto& e : server.take_events()) {
      StreamSeen& st = seen[e.stream];
      switch (e.kind) {
        case Event::Kind::request: {
          FUZZ_CHECK(!st.head, "two request heads on stream %d", e.stream);
          st.head = true;
          check_head(e, settings);
          if ((flags & 4) && ++answered % 3 == 0) {
            server.reset(e.stream, sluice::http2::ErrorCode::refused_stream);
            break;
          }
          sluice::Headers h;
          h.add("Content-Type", "text/plain");
          h.add("Connection", "close");
          server.submit_response(e.stream, 200, h, false);
          size_t body = e.head.target.size() % 4096;
          server.send_data(e.stream, std::string(body, 'r'), !(flags & 2));
          queued += body + 1024;
          if (flags & 2) {
            queued += 1024;
            sluice::Headers t;
            t.add("grpc-status", "0");
            server.submit_trailers(e.stream, t);
          }
          break;
        }
        case Event::Kind::data:
          FUZZ_CHECK(st.head && !st.ended, "body data outside a request");
          server.consume(e.stream, e.data.size());
          break;
        case Event::Kind::trailers:
        case Event::Kind::end:
          FUZZ_CHECK(st.head && !st.ended, "request end outside a request");
          if (e.kind == Event::Kind::end) st.ended = true;
          break;
        case Event::Kind::reset:
          st.ended = true;
          break;
      }
    }
    out.clear();
    total_out += server.produce(out);
    // Every byte out is an answer's or answers bytes in (a bounded multiple).
    FUZZ_CHECK(total_out <= queued + 64 * 1024 + 64 * total_in,
               "%zu bytes out for %zu in, %zu queued", total_out, total_in, queued);
  }
  return 0;
}
