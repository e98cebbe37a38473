// libFuzzer target: the ClientHello reader used for SNI passthrough routing
// (lib/tls/client_hello.hpp). Bytes arrive in pieces, so its answers must be
// consistent across prefixes: a verdict (ok or invalid) on a prefix cannot
// change when more bytes arrive, and a prefix of a valid ClientHello is
// never invalid. An SNI is lowercase, printable and at most 255 bytes.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fuzz_check.hpp"
#include "tls/client_hello.hpp"

namespace {

using sluice::tls::ClientHelloInfo;
using Status = ClientHelloInfo::Status;

const char* name(Status s) {
  return s == Status::ok ? "ok" : s == Status::invalid ? "invalid" : "need_more";
}

void check_host(const std::string& sni) {
  FUZZ_CHECK(sni.size() <= 255, "SNI of %zu bytes", sni.size());
  for (unsigned char c : sni)
    FUZZ_CHECK(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z'), "SNI byte 0x%02x", c);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  ClientHelloInfo full = sluice::tls::parse_client_hello(bytes);
  if (full.status == Status::ok) check_host(full.sni);
  if (auto host = sluice::tls::parse_server_name(bytes)) {
    FUZZ_CHECK(!host->empty(), "empty host_name accepted");
    check_host(*host);
  }

  // Every prefix for small inputs, about 64 spread over larger ones.
  size_t step = size <= 512 ? 1 : size / 64;
  for (size_t n = 0; n < size; n += step) {
    ClientHelloInfo part = sluice::tls::parse_client_hello(bytes.first(n));
    if (part.status == Status::ok) {
      check_host(part.sni);
      FUZZ_CHECK(full.status == Status::ok && full.sni == part.sni,
                 "prefix of %zu bytes is ok (sni '%s'), all %zu bytes are %s (sni '%s')", n,
                 part.sni.c_str(), size, name(full.status), full.sni.c_str());
    } else if (part.status == Status::invalid) {
      FUZZ_CHECK(full.status == Status::invalid, "prefix of %zu bytes is invalid, all %zu are %s",
                 n, size, name(full.status));
    }
  }
  return 0;
}
