#pragma once
// Envoy's response flags: why the gateway answered as it did, for access
// logs and metrics. to_string gives Envoy's text ("UF", "URX,UF", "-").

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace sluice {

// The flags sluice sets, with Envoy's short names. Values are stable only
// within one build: log the text, not the number.
enum class ResponseFlag : uint8_t {
  no_healthy_upstream,                // UH
  upstream_request_timeout,           // UT
  local_reset,                        // LR
  upstream_remote_reset,              // UR
  upstream_connection_failure,        // UF
  upstream_connection_termination,    // UC
  upstream_overflow,                  // UO
  no_route_found,                     // NR
  delay_injected,                     // DI
  fault_injected,                     // FI
  rate_limited,                       // RL
  unauthorized_external_service,      // UAEX
  downstream_connection_termination,  // DC
  upstream_retry_limit_exceeded,      // URX
  stream_idle_timeout,                // SI
  downstream_protocol_error,          // DPE
  upstream_max_stream_duration,       // UMSDR
  duration_timeout,                   // DT
  upstream_protocol_error,            // UPE
  no_cluster_found,                   // NC
  rate_limit_service_error,           // RLSE
};
inline constexpr size_t kResponseFlagCount = 21;

// Envoy's short name: "UH", "URX", ...
std::string_view to_string(ResponseFlag flag);

// The flags of one request, each at most once, in the order they were set
// (Envoy logs them so: a retry limit hit on a connect failure is "URX,UF").
class ResponseFlags {
 public:
  constexpr ResponseFlags() = default;
  constexpr ResponseFlags(std::initializer_list<ResponseFlag> flags) {
    for (ResponseFlag f : flags) add(f);
  }

  constexpr void add(ResponseFlag flag) {
    if (has(flag)) return;
    bits_ |= bit(flag);
    order_[size_++] = flag;
  }
  constexpr void add(const ResponseFlags& other) {
    for (size_t i = 0; i < other.size_; ++i) add(other.order_[i]);
  }
  constexpr bool has(ResponseFlag flag) const { return (bits_ & bit(flag)) != 0; }
  constexpr bool empty() const { return size_ == 0; }
  constexpr size_t size() const { return size_; }
  // The i-th flag set, i < size().
  constexpr ResponseFlag operator[](size_t i) const { return order_[i]; }
  constexpr void clear() { *this = ResponseFlags(); }

  friend constexpr bool operator==(const ResponseFlags& a, const ResponseFlags& b) {
    if (a.size_ != b.size_) return false;
    for (size_t i = 0; i < a.size_; ++i)
      if (a.order_[i] != b.order_[i]) return false;
    return true;
  }

 private:
  static constexpr uint32_t bit(ResponseFlag f) { return uint32_t{1} << static_cast<unsigned>(f); }
  std::array<ResponseFlag, kResponseFlagCount> order_{};
  uint8_t size_ = 0;
  uint32_t bits_ = 0;
};

// Envoy's %RESPONSE_FLAGS%: the short names joined by ',', or "-" for none.
std::string to_string(const ResponseFlags& flags);

}  // namespace sluice
