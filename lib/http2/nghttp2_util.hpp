#pragma once
// What the server and client sides of the codec share over nghttp2's
// C API: byte views, name/value pairs, and draining its output. Internal
// to lib/http2.

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::http2::detail {

inline std::string_view as_view(const uint8_t* p, size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

// nghttp2 takes non-const pointers but only reads them (no NO_COPY flags).
inline nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Appends every frame `session` has ready to `out`; returns how many bytes.
inline size_t drain_output(nghttp2_session* session, std::string& out) {
  size_t total = 0;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n <= 0) break;
    out.append(as_view(data, static_cast<size_t>(n)));
    total += static_cast<size_t>(n);
  }
  return total;
}

}  // namespace sluice::http2::detail
