#pragma once
// Access-log lines from Envoy command operators: a format string is
// compiled once (unknown operators are errors at load, naming the
// operator), then each request appends its line without parsing anything.
// Istio's default TEXT format and JSON encoding are built in.
//
// Supported operators (Envoy's meaning; an unset value prints "-", and in
// JSON null):
//   START_TIME, START_TIME(strftime format; %f %1f..%9f fractions, %s seconds)
//   REQ(H), REQ(H?ALT), RESP(H), RESP(H?ALT), each with an optional :N length
//   PROTOCOL, RESPONSE_CODE, RESPONSE_FLAGS, RESPONSE_CODE_DETAILS,
//   CONNECTION_TERMINATION_DETAILS, UPSTREAM_TRANSPORT_FAILURE_REASON,
//   BYTES_RECEIVED, BYTES_SENT, DURATION, UPSTREAM_HOST, UPSTREAM_CLUSTER,
//   UPSTREAM_CLUSTER_RAW, UPSTREAM_LOCAL_ADDRESS, DOWNSTREAM_LOCAL_ADDRESS,
//   DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT, DOWNSTREAM_REMOTE_ADDRESS,
//   DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, DOWNSTREAM_PEER_URI_SAN,
//   REQUESTED_SERVER_NAME, ROUTE_NAME, UPSTREAM_REQUEST_ATTEMPT_COUNT,
//   HOSTNAME, GRPC_STATUS (CAMEL_STRING, the default: "NotFound";
//   SNAKE_STRING: "NOT_FOUND"; NUMBER: 5), GRPC_STATUS_NUMBER

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/request.hpp"
#include "sluice/response_flags.hpp"
#include "sluice/result.hpp"

namespace sluice::telemetry {

// Istio's default TEXT format (meshConfig accessLogFormat unset).
extern const std::string_view kIstioTextFormat;

// What one request's line is made of. Views: valid while the line is built.
struct LogRecord {
  std::chrono::system_clock::time_point start_time;
  const RequestHead* request = nullptr;
  // The request's target and authority as received when a route has
  // rewritten them in `request` (a null data(): `request`'s own).
  std::string_view received_target;
  std::string_view received_authority;
  // Envoy logs X-Forwarded-For with the client's address appended (Istio's
  // gateways use the remote address): REQ(X-FORWARDED-FOR) is the
  // request's header, ", ", this; only this without the header. Empty: the
  // header as received.
  std::string_view forwarded_client;
  const Headers* response_headers = nullptr;
  std::string_view protocol = "HTTP/1.1";
  uint16_t response_code = 0;
  ResponseFlags response_flags;
  std::string_view response_code_details;
  std::string_view connection_termination_details;
  std::string_view upstream_transport_failure_reason;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  std::chrono::microseconds duration{0};
  std::string_view upstream_host;     // "ip:port"
  std::string_view upstream_cluster;  // Istio's "outbound|80|v1|reviews.default.svc.cluster.local"
  std::string_view upstream_local_address;
  std::string_view downstream_local_address;   // "ip:port"
  std::string_view downstream_remote_address;  // "ip:port"
  std::string_view downstream_peer_uri_san;
  std::string_view requested_server_name;
  std::string_view route_name;
  uint32_t attempts = 0;
  std::string_view hostname;
  int32_t grpc_status = -1;  // the grpc-status the client saw; -1: none
};

class LogFormat {
 public:
  // A format string. `object` names where it came from in errors
  // ("meshConfig.accessLogFormat").
  static Result<LogFormat> text(std::string_view format, std::string_view object);
  // One JSON object per line: each key's value is a format string; a value
  // that is exactly one numeric operator is a JSON number.
  static Result<LogFormat> json(const std::vector<std::pair<std::string, std::string>>& fields,
                                std::string_view object);
  // Istio's default TEXT and JSON formats.
  static LogFormat istio_text();
  static LogFormat istio_json();

  // Appends the line for `record` to `out`. JSON lines end with '\n'; text
  // lines end as their format string does (Istio's ends with '\n').
  void append(const LogRecord& record, std::string& out) const;

 private:
  enum class Kind : uint8_t {
    literal,
    start_time,
    req,
    resp,
    protocol,
    response_code,
    response_flags,
    response_code_details,
    connection_termination_details,
    upstream_transport_failure_reason,
    bytes_received,
    bytes_sent,
    duration,
    upstream_host,
    upstream_cluster,
    upstream_local_address,
    downstream_local_address,
    downstream_local_address_without_port,
    downstream_remote_address,
    downstream_remote_address_without_port,
    downstream_peer_uri_san,
    requested_server_name,
    route_name,
    attempts,
    hostname,
    grpc_status,
  };
  // REQ(...) names the request line's parts by pseudo-header; resolved at
  // compile time so a line does not compare names.
  enum class Source : uint8_t { header, method, path, authority, scheme, forwarded_for };
  struct Op {
    Kind kind = Kind::literal;
    std::string prefix;  // the format's text before this operator
    std::string text;    // literal (the text after the last operator); header
                         // name (lower case); START_TIME's format
    std::string alt;     // REQ(H?ALT): the header tried second
    Source source = Source::header;
    Source alt_source = Source::header;
    size_t max_length = 0;  // ":N"; 0: no limit
    bool numeric = false;   // a number in JSON
  };
  struct Field {
    std::string key;  // JSON only
    std::vector<Op> ops;
  };
  struct Scratch;
  // The operator's value; a null data() when unset (Envoy's "-": every set
  // value points somewhere, even when empty). Numbers and times are written
  // into `scratch`, valid until the next value.
  static std::string_view value(const Op& op, const LogRecord& r, Scratch& scratch);
  // The field's text with "-" for unset values, appended to `out`.
  static void append_text(const Field& f, const LogRecord& r, Scratch& scratch, std::string& out);

  bool json_ = false;
  std::vector<Field> fields_;
};

}  // namespace sluice::telemetry
