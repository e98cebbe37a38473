#include "telemetry/access_log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <ctime>
#include <optional>

#include "http/tokens.hpp"

namespace sluice::telemetry {

const std::string_view kIstioTextFormat =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

namespace {

// Istio's default JSON encoding: its keys, plus the x_request_id.
const std::pair<const char*, const char*> kIstioJson[] = {
    {"start_time", "%START_TIME%"},
    {"route_name", "%ROUTE_NAME%"},
    {"method", "%REQ(:METHOD)%"},
    {"path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"},
    {"protocol", "%PROTOCOL%"},
    {"response_code", "%RESPONSE_CODE%"},
    {"response_flags", "%RESPONSE_FLAGS%"},
    {"response_code_details", "%RESPONSE_CODE_DETAILS%"},
    {"connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"},
    {"bytes_received", "%BYTES_RECEIVED%"},
    {"bytes_sent", "%BYTES_SENT%"},
    {"duration", "%DURATION%"},
    {"upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"},
    {"x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"},
    {"user_agent", "%REQ(USER-AGENT)%"},
    {"request_id", "%REQ(X-REQUEST-ID)%"},
    {"x_request_id", "%REQ(X-REQUEST-ID)%"},
    {"authority", "%REQ(:AUTHORITY)%"},
    {"upstream_host", "%UPSTREAM_HOST%"},
    {"upstream_cluster", "%UPSTREAM_CLUSTER%"},
    {"upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"},
    {"downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"},
    {"downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"},
    {"requested_server_name", "%REQUESTED_SERVER_NAME%"},
    {"upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"},
};

// "ip:port" -> "ip"; "[v6]:port" -> "v6".
std::string_view without_port(std::string_view address) {
  if (address.starts_with('[')) {
    size_t close = address.find(']');
    return close == std::string_view::npos ? address : address.substr(1, close - 1);
  }
  size_t colon = address.rfind(':');
  return colon == std::string_view::npos ? address : address.substr(0, colon);
}

// START_TIME: Envoy's default is ISO 8601 in UTC with milliseconds, 24
// bytes, written into `buf`.
std::string_view default_start_time(std::chrono::system_clock::time_point t, char* buf) {
  using namespace std::chrono;
  auto since = t.time_since_epoch();
  auto secs = duration_cast<seconds>(since);
  auto millis = duration_cast<milliseconds>(since - secs).count();
  if (millis < 0) {
    secs -= seconds(1);
    millis += 1000;
  }
  auto tt = static_cast<std::time_t>(secs.count());
  // Lines of one second share its text: formatted once per thread.
  thread_local std::time_t cached_second = -1;
  thread_local char cached[20];
  if (tt != cached_second) {
    std::tm tm{};
    gmtime_r(&tt, &tm);
    std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_second = tt;
  }
  std::memcpy(buf, cached, 19);
  buf[19] = '.';
  buf[20] = static_cast<char>('0' + millis / 100);
  buf[21] = static_cast<char>('0' + millis / 10 % 10);
  buf[22] = static_cast<char>('0' + millis % 10);
  buf[23] = 'Z';
  return {buf, 24};
}

// A custom START_TIME: strftime's format with %s (Unix seconds) and %f /
// %1f..%9f (the fraction of the second to that many digits; %f is 9).
std::string start_time(std::chrono::system_clock::time_point t, std::string_view format) {
  using namespace std::chrono;
  auto since = t.time_since_epoch();
  auto secs = duration_cast<seconds>(since);
  auto nanos = duration_cast<nanoseconds>(since - secs).count();
  if (nanos < 0) {
    secs -= seconds(1);
    nanos += 1000000000;
  }
  std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  // Expand the extensions first, then let strftime do the rest.
  std::string expanded;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      expanded += format[i];
      continue;
    }
    char next = format[i + 1];
    if (next == 's') {
      expanded += std::to_string(secs.count());
      ++i;
    } else if (next == 'f' ||
               (next >= '1' && next <= '9' && i + 2 < format.size() && format[i + 2] == 'f')) {
      int digits = next == 'f' ? 9 : next - '0';
      std::string all = fmt::format("{:09}", nanos);
      expanded += all.substr(0, static_cast<size_t>(digits));
      i += next == 'f' ? 1 : 2;
    } else {
      expanded += format[i];
      expanded += next;
      ++i;
    }
  }
  std::string out(expanded.size() * 2 + 64, '\0');
  size_t n = std::strftime(out.data(), out.size(), expanded.c_str(), &tm);
  out.resize(n);
  return out;
}

}  // namespace

namespace {

// Where REQ(name) reads from. X-Forwarded-For is the record's own: Envoy
// logs it with the client appended, and the session passes that value
// instead of editing the request's headers.
template <typename Source>
Source request_source_of(std::string_view name) {
  if (name == ":method") return Source::method;
  if (name == ":path") return Source::path;
  if (name == ":authority") return Source::authority;
  if (name == ":scheme") return Source::scheme;
  if (name == "x-forwarded-for") return Source::forwarded_for;
  return Source::header;
}

struct Command {
  std::string_view name;
  int kind;       // LogFormat::Kind, as an int: the enum is private
  bool argument;  // takes (...)
  bool numeric;   // a JSON number
};

}  // namespace

// The operator table: name, kind, whether it takes an argument, whether it
// is a number in JSON.
#define SLUICE_OP(name, kind, arg, num) \
  { name, static_cast<int>(Kind::kind), arg, num }

Result<LogFormat> LogFormat::text(std::string_view format, std::string_view object) {
  static const Command kCommands[] = {
      SLUICE_OP("START_TIME", start_time, true, false),
      SLUICE_OP("REQ", req, true, false),
      SLUICE_OP("RESP", resp, true, false),
      SLUICE_OP("PROTOCOL", protocol, false, false),
      SLUICE_OP("RESPONSE_CODE", response_code, false, true),
      SLUICE_OP("RESPONSE_FLAGS", response_flags, false, false),
      SLUICE_OP("RESPONSE_CODE_DETAILS", response_code_details, false, false),
      SLUICE_OP("CONNECTION_TERMINATION_DETAILS", connection_termination_details, false, false),
      SLUICE_OP("UPSTREAM_TRANSPORT_FAILURE_REASON", upstream_transport_failure_reason, false,
                false),
      SLUICE_OP("BYTES_RECEIVED", bytes_received, false, true),
      SLUICE_OP("BYTES_SENT", bytes_sent, false, true),
      SLUICE_OP("DURATION", duration, false, true),
      SLUICE_OP("UPSTREAM_HOST", upstream_host, false, false),
      SLUICE_OP("UPSTREAM_CLUSTER", upstream_cluster, false, false),
      SLUICE_OP("UPSTREAM_CLUSTER_RAW", upstream_cluster, false, false),
      SLUICE_OP("UPSTREAM_LOCAL_ADDRESS", upstream_local_address, false, false),
      SLUICE_OP("DOWNSTREAM_LOCAL_ADDRESS", downstream_local_address, false, false),
      SLUICE_OP("DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", downstream_local_address_without_port,
                false, false),
      SLUICE_OP("DOWNSTREAM_REMOTE_ADDRESS", downstream_remote_address, false, false),
      SLUICE_OP("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", downstream_remote_address_without_port,
                false, false),
      SLUICE_OP("DOWNSTREAM_PEER_URI_SAN", downstream_peer_uri_san, false, false),
      SLUICE_OP("REQUESTED_SERVER_NAME", requested_server_name, false, false),
      SLUICE_OP("ROUTE_NAME", route_name, false, false),
      SLUICE_OP("UPSTREAM_REQUEST_ATTEMPT_COUNT", attempts, false, true),
      SLUICE_OP("HOSTNAME", hostname, false, false),
      SLUICE_OP("GRPC_STATUS", grpc_status, true, false),
      SLUICE_OP("GRPC_STATUS_NUMBER", grpc_status, false, true),
  };
  auto error = [&](size_t at, std::string message) {
    return Error{std::string(object), {}, fmt::format("at position {}: {}", at, message)};
  };
  auto request_source = [](std::string_view n) { return request_source_of<Source>(n); };
  Field field;
  std::string literal;
  for (size_t i = 0; i < format.size();) {
    if (format[i] != '%') {
      literal += format[i++];
      continue;
    }
    size_t start = i++;
    size_t name_end = i;
    while (name_end < format.size() &&
           (std::isupper(static_cast<unsigned char>(format[name_end])) ||
            std::isdigit(static_cast<unsigned char>(format[name_end])) || format[name_end] == '_'))
      ++name_end;
    std::string_view name = format.substr(i, name_end - i);
    if (name.empty()) return error(start, "'%' does not start an operator (%NAME%)");
    const Command* command = nullptr;
    for (const auto& c : kCommands)
      if (c.name == name) command = &c;
    if (!command) return error(start, fmt::format("unknown operator %{}%", name));
    Op op;
    op.kind = static_cast<Kind>(command->kind);
    op.numeric = command->numeric;
    i = name_end;
    if (i < format.size() && format[i] == '(') {
      if (!command->argument) return error(start, fmt::format("%{}% takes no argument", name));
      size_t close = format.find(')', i);
      if (close == std::string_view::npos) return error(start, "unclosed '('");
      std::string_view arg = format.substr(i + 1, close - i - 1);
      if (op.kind == Kind::start_time) {
        op.text = std::string(arg);
      } else if (op.kind == Kind::grpc_status) {
        if (arg != "CAMEL_STRING" && arg != "SNAKE_STRING" && arg != "NUMBER")
          return error(start, "%GRPC_STATUS(...)% takes CAMEL_STRING, SNAKE_STRING or NUMBER");
        op.text = std::string(arg);
      } else {
        size_t q = arg.find('?');
        op.text = http::to_lower(arg.substr(0, q));
        if (q != std::string_view::npos) op.alt = http::to_lower(arg.substr(q + 1));
        if (op.text.empty() || (q != std::string_view::npos && op.alt.empty()))
          return error(start, fmt::format("%{}(...)% needs a header name", name));
        if (op.kind == Kind::req) {
          op.source = request_source(op.text);
          op.alt_source = request_source(op.alt);
        }
      }
      i = close + 1;
    } else if (op.kind == Kind::req || op.kind == Kind::resp) {
      return error(start, fmt::format("%{}% needs a header: %{}(NAME)%", name, name));
    }
    // GRPC_STATUS_NUMBER is GRPC_STATUS(NUMBER); both are numbers in JSON.
    if (op.kind == Kind::grpc_status && (op.numeric || op.text == "NUMBER")) {
      op.text = "NUMBER";
      op.numeric = true;
    }
    if (i < format.size() && format[i] == ':') {
      size_t digits = i + 1;
      size_t n = 0;
      while (digits < format.size() && std::isdigit(static_cast<unsigned char>(format[digits])) &&
             n < 1000000)
        n = n * 10 + static_cast<size_t>(format[digits++] - '0');
      if (digits == i + 1 || n == 0) return error(start, "':' wants a length greater than 0");
      op.max_length = n;
      i = digits;
    }
    if (i >= format.size() || format[i] != '%')
      return error(start, fmt::format("%{} is not closed by '%'", name));
    ++i;
    // The text before an operator travels with it: a line is one step per
    // operator, not per piece.
    op.prefix = std::move(literal);
    literal.clear();
    field.ops.push_back(std::move(op));
  }
  if (!literal.empty()) {
    Op lit;
    lit.text = std::move(literal);
    field.ops.push_back(std::move(lit));
  }
  LogFormat out;
  out.fields_.push_back(std::move(field));
  return out;
}

#undef SLUICE_OP

Result<LogFormat> LogFormat::json(const std::vector<std::pair<std::string, std::string>>& fields,
                                  std::string_view object) {
  LogFormat out;
  out.json_ = true;
  for (const auto& [key, value] : fields) {
    auto one = text(value, fmt::format("{}: {}", object, key));
    if (!one) return one.error();
    Field f = std::move(one->fields_.front());
    f.key = key;
    out.fields_.push_back(std::move(f));
  }
  return out;
}

LogFormat LogFormat::istio_text() {
  auto f = text(kIstioTextFormat, "Istio's default format");
  return std::move(f).value();
}

LogFormat LogFormat::istio_json() {
  std::vector<std::pair<std::string, std::string>> fields;
  for (const auto& [k, v] : kIstioJson) fields.emplace_back(k, v);
  auto f = json(fields, "Istio's default JSON format");
  return std::move(f).value();
}

// gRPC status codes 0..16 as Envoy's GRPC_STATUS prints them: CAMEL_STRING
// and SNAKE_STRING.
constexpr std::array<std::pair<std::string_view, std::string_view>, 17> kGrpcStatusNames = {{
    {"Ok", "OK"},
    {"Canceled", "CANCELLED"},
    {"Unknown", "UNKNOWN"},
    {"InvalidArgument", "INVALID_ARGUMENT"},
    {"DeadlineExceeded", "DEADLINE_EXCEEDED"},
    {"NotFound", "NOT_FOUND"},
    {"AlreadyExists", "ALREADY_EXISTS"},
    {"PermissionDenied", "PERMISSION_DENIED"},
    {"ResourceExhausted", "RESOURCE_EXHAUSTED"},
    {"FailedPrecondition", "FAILED_PRECONDITION"},
    {"Aborted", "ABORTED"},
    {"OutOfRange", "OUT_OF_RANGE"},
    {"Unimplemented", "UNIMPLEMENTED"},
    {"Internal", "INTERNAL"},
    {"Unavailable", "UNAVAILABLE"},
    {"DataLoss", "DATA_LOSS"},
    {"Unauthenticated", "UNAUTHENTICATED"},
}};

// Where a value that has to be built is written. Every value is copied
// into the line before the next one is made, so one of each is enough.
struct LogFormat::Scratch {
  static constexpr size_t kSlot = 24;  // a uint64_t; the default START_TIME
  char slot[kSlot];
  std::string spill;  // a custom START_TIME, response flags, X-Forwarded-For
};

std::string_view LogFormat::value(const Op& op, const LogRecord& r, Scratch& scratch) {
  auto number = [&](uint64_t n) -> std::string_view {
    char* p = scratch.slot;
    auto end = std::to_chars(p, p + Scratch::kSlot, n).ptr;
    return std::string_view(p, static_cast<size_t>(end - p));
  };
  auto text_of = [](std::string_view s) -> std::string_view {
    return s.empty() ? std::string_view() : s;
  };
  auto header = [](const Headers& headers, const std::string& name) -> std::string_view {
    auto v = headers.get(name);
    return v ? *v : std::string_view();
  };
  auto request = [&](const std::string& name, Source source) -> std::string_view {
    const RequestHead& h = *r.request;
    switch (source) {
      case Source::method:
        return std::string_view(h.method);
      case Source::path:
        return r.received_target.data() ? r.received_target : std::string_view(h.target);
      case Source::authority:
        return r.received_authority.data() ? r.received_authority : std::string_view(h.authority);
      case Source::scheme:
        return std::string_view(h.scheme);
      case Source::forwarded_for: {
        std::string_view received = header(h.headers, name);
        if (r.forwarded_client.empty()) return received;
        if (!received.data()) return r.forwarded_client;
        scratch.spill.assign(received).append(", ").append(r.forwarded_client);
        return std::string_view(scratch.spill);
      }
      case Source::header:
        break;
    }
    return header(h.headers, name);
  };
  switch (op.kind) {
    case Kind::literal:
      return std::string_view(op.text);
    case Kind::start_time:
      if (op.text.empty()) return default_start_time(r.start_time, scratch.slot);
      return std::string_view(scratch.spill = start_time(r.start_time, op.text));
    case Kind::req: {
      if (!r.request) return {};
      auto v = request(op.text, op.source);
      if (!v.data() && !op.alt.empty()) v = request(op.alt, op.alt_source);
      return v;
    }
    case Kind::resp: {
      if (!r.response_headers) return {};
      auto v = header(*r.response_headers, op.text);
      if (!v.data() && !op.alt.empty()) v = header(*r.response_headers, op.alt);
      return v;
    }
    case Kind::protocol:
      return text_of(r.protocol);
    case Kind::response_code:
      return number(r.response_code);
    case Kind::response_flags:
      if (r.response_flags.empty()) return std::string_view("-");
      return std::string_view(scratch.spill = to_string(r.response_flags));
    case Kind::response_code_details:
      return text_of(r.response_code_details);
    case Kind::connection_termination_details:
      return text_of(r.connection_termination_details);
    case Kind::upstream_transport_failure_reason:
      return text_of(r.upstream_transport_failure_reason);
    case Kind::bytes_received:
      return number(r.bytes_received);
    case Kind::bytes_sent:
      return number(r.bytes_sent);
    case Kind::duration:
      return number(static_cast<uint64_t>(r.duration.count() / 1000));
    case Kind::upstream_host:
      return text_of(r.upstream_host);
    case Kind::upstream_cluster:
      return text_of(r.upstream_cluster);
    case Kind::upstream_local_address:
      return text_of(r.upstream_local_address);
    case Kind::downstream_local_address:
      return text_of(r.downstream_local_address);
    case Kind::downstream_local_address_without_port:
      return text_of(without_port(r.downstream_local_address));
    case Kind::downstream_remote_address:
      return text_of(r.downstream_remote_address);
    case Kind::downstream_remote_address_without_port:
      return text_of(without_port(r.downstream_remote_address));
    case Kind::downstream_peer_uri_san:
      return text_of(r.downstream_peer_uri_san);
    case Kind::requested_server_name:
      return text_of(r.requested_server_name);
    case Kind::route_name:
      return text_of(r.route_name);
    case Kind::attempts:
      if (r.attempts) return number(r.attempts);
      return {};
    case Kind::hostname:
      return text_of(r.hostname);
    case Kind::grpc_status:
      if (r.grpc_status < 0) return {};
      if (op.text != "NUMBER" && static_cast<size_t>(r.grpc_status) < kGrpcStatusNames.size()) {
        const auto& names = kGrpcStatusNames[static_cast<size_t>(r.grpc_status)];
        return op.text == "SNAKE_STRING" ? names.second : names.first;
      }
      return number(static_cast<uint64_t>(r.grpc_status));
  }
  return {};
}

namespace {

// Most of a line's pieces are under 16 bytes: two overlapping fixed-size
// copies (plain moves, no call) instead of memcpy's dispatch.
inline void copy_short(char* p, std::string_view v) {
  const char* s = v.data();
  size_t n = v.size();
  if (n > 16) {
    std::memcpy(p, s, n);
  } else if (n >= 8) {
    std::memcpy(p, s, 8);
    std::memcpy(p + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(p, s, 4);
    std::memcpy(p + n - 4, s + n - 4, 4);
  } else if (n > 0) {
    p[0] = s[0];
    p[n / 2] = s[n / 2];
    p[n - 1] = s[n - 1];
  }
}

std::string_view unset_as_dash(std::string_view v) {
  return v.data() ? v : std::string_view("-");
}

std::string_view clipped(std::string_view v, size_t max_length) {
  return max_length && v.size() > max_length ? v.substr(0, max_length) : v;
}

void append_json_string(std::string& out, std::string_view v) {
  out += '"';
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

void LogFormat::append_text(const Field& f, const LogRecord& r, Scratch& scratch,
                            std::string& out) {
  // Written through a pointer into the string's whole capacity, grown only
  // when a line outgrows it; the string is cut to the line at the end.
  size_t used = out.size();
  out.resize(std::max(out.capacity(), used + 256));
  char* p = out.data() + used;
  char* end = out.data() + out.size();
  for (const Op& op : f.ops) {
    std::string_view v = op.text;
    if (op.kind != Kind::literal) v = clipped(unset_as_dash(value(op, r, scratch)), op.max_length);
    size_t need = op.prefix.size() + v.size();
    if (static_cast<size_t>(end - p) < need) {
      used = static_cast<size_t>(p - out.data());
      out.resize(std::max(out.size() * 2, used + need));
      p = out.data() + used;
      end = out.data() + out.size();
    }
    copy_short(p, op.prefix);
    p += op.prefix.size();
    copy_short(p, v);
    p += v.size();
  }
  out.resize(static_cast<size_t>(p - out.data()));
}

void LogFormat::append(const LogRecord& record, std::string& out) const {
  thread_local Scratch scratch;
  if (!json_) {
    append_text(fields_.front(), record, scratch, out);
    return;
  }
  out += '{';
  bool first = true;
  std::string s;
  for (const Field& f : fields_) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, f.key);
    out += ':';
    if (f.ops.size() == 1 && f.ops.front().prefix.empty()) {
      // One operator: typed (a number, or null when unset).
      const Op& op = f.ops.front();
      std::string_view v = value(op, record, scratch);
      if (!v.data())
        out += "null";
      else if (op.numeric)
        out += clipped(v, op.max_length);
      else
        append_json_string(out, clipped(v, op.max_length));
    } else {
      // A template: a string, with "-" for unset parts.
      s.clear();
      append_text(f, record, scratch, s);
      append_json_string(out, s);
    }
  }
  out += "}\n";
}

}  // namespace sluice::telemetry
