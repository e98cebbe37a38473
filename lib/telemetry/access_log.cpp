#include "telemetry/access_log.hpp"

#include <fmt/format.h>

#include <charconv>
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

std::optional<std::string_view> request_header(const LogRecord& record, std::string_view name) {
  const RequestHead& r = *record.request;
  // Envoy logs X-Forwarded-For with the client appended; the session
  // passes that value instead of editing the request's headers.
  if (!record.x_forwarded_for.empty() && name == "x-forwarded-for") return record.x_forwarded_for;
  if (name == ":method") return std::string_view(r.method);
  if (name == ":path") return std::string_view(r.target);
  if (name == ":authority") return std::string_view(r.authority);
  if (name == ":scheme") return std::string_view(r.scheme);
  return r.headers.get(name);
}

// START_TIME: Envoy's default is ISO 8601 in UTC with milliseconds; a
// custom format is strftime's with %s (Unix seconds) and %f / %1f..%9f
// (the fraction of the second to that many digits; %f is 9).
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
  if (format.empty()) {
    // Lines of one second share its text: formatted once per thread.
    thread_local std::time_t cached_second = -1;
    thread_local char cached[24];
    if (tt != cached_second) {
      std::tm tm{};
      gmtime_r(&tt, &tm);
      std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
      cached_second = tt;
    }
    std::string out;
    out.reserve(24);
    out += cached;
    char ms[6];
    ms[0] = '.';
    int millis = static_cast<int>(nanos / 1000000);
    ms[1] = static_cast<char>('0' + millis / 100);
    ms[2] = static_cast<char>('0' + millis / 10 % 10);
    ms[3] = static_cast<char>('0' + millis % 10);
    ms[4] = 'Z';
    out.append(ms, 5);
    return out;
  }
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
  };
  auto error = [&](size_t at, std::string message) {
    return Error{std::string(object), {}, fmt::format("at position {}: {}", at, message)};
  };
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
      } else {
        size_t q = arg.find('?');
        op.text = http::to_lower(arg.substr(0, q));
        if (q != std::string_view::npos) op.alt = http::to_lower(arg.substr(q + 1));
        if (op.text.empty() || (q != std::string_view::npos && op.alt.empty()))
          return error(start, fmt::format("%{}(...)% needs a header name", name));
      }
      i = close + 1;
    } else if (op.kind == Kind::req || op.kind == Kind::resp) {
      return error(start, fmt::format("%{}% needs a header: %{}(NAME)%", name, name));
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
    if (!literal.empty()) {
      Op lit;
      lit.text = std::move(literal);
      literal.clear();
      field.ops.push_back(std::move(lit));
    }
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

namespace {

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

// The operator's value, or nullopt when unset (Envoy's "-").
void LogFormat::append_value(const Op& op, const LogRecord& r, std::string& out, bool json) const {
  std::optional<std::string_view> v;
  std::string owned;
  char digits[24];
  auto number = [&](uint64_t n) {
    auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    v = std::string_view(digits, static_cast<size_t>(end - digits));
  };
  auto text_of = [&](std::string_view s) {
    if (!s.empty()) v = s;
  };
  switch (op.kind) {
    case Kind::literal:
      v = op.text;
      break;
    case Kind::start_time:
      owned = start_time(r.start_time, op.text);
      v = owned;
      break;
    case Kind::req:
      if (r.request) {
        v = request_header(r, op.text);
        if (!v && !op.alt.empty()) v = request_header(r, op.alt);
      }
      break;
    case Kind::resp:
      if (r.response_headers) {
        v = r.response_headers->get(op.text);
        if (!v && !op.alt.empty()) v = r.response_headers->get(op.alt);
      }
      break;
    case Kind::protocol:
      text_of(r.protocol);
      break;
    case Kind::response_code:
      number(r.response_code);
      break;
    case Kind::response_flags:
      if (r.response_flags.empty()) {
        v = "-";
      } else {
        owned = to_string(r.response_flags);
        v = owned;
      }
      break;
    case Kind::response_code_details:
      text_of(r.response_code_details);
      break;
    case Kind::connection_termination_details:
      text_of(r.connection_termination_details);
      break;
    case Kind::upstream_transport_failure_reason:
      text_of(r.upstream_transport_failure_reason);
      break;
    case Kind::bytes_received:
      number(r.bytes_received);
      break;
    case Kind::bytes_sent:
      number(r.bytes_sent);
      break;
    case Kind::duration:
      number(static_cast<uint64_t>(r.duration.count() / 1000));
      break;
    case Kind::upstream_host:
      text_of(r.upstream_host);
      break;
    case Kind::upstream_cluster:
      text_of(r.upstream_cluster);
      break;
    case Kind::upstream_local_address:
      text_of(r.upstream_local_address);
      break;
    case Kind::downstream_local_address:
      text_of(r.downstream_local_address);
      break;
    case Kind::downstream_local_address_without_port:
      text_of(without_port(r.downstream_local_address));
      break;
    case Kind::downstream_remote_address:
      text_of(r.downstream_remote_address);
      break;
    case Kind::downstream_remote_address_without_port:
      text_of(without_port(r.downstream_remote_address));
      break;
    case Kind::downstream_peer_uri_san:
      text_of(r.downstream_peer_uri_san);
      break;
    case Kind::requested_server_name:
      text_of(r.requested_server_name);
      break;
    case Kind::route_name:
      text_of(r.route_name);
      break;
    case Kind::attempts:
      if (r.attempts) number(r.attempts);
      break;
    case Kind::hostname:
      text_of(r.hostname);
      break;
  }
  if (v && op.max_length && v->size() > op.max_length) v = v->substr(0, op.max_length);
  if (!json) {
    out += v.value_or("-");
  } else if (!v) {
    out += "null";
  } else if (op.numeric) {
    out += *v;
  } else {
    append_json_string(out, *v);
  }
}

void LogFormat::append(const LogRecord& record, std::string& out) const {
  if (!json_) {
    for (const Op& op : fields_.front().ops) append_value(op, record, out, false);
    return;
  }
  out += '{';
  bool first = true;
  for (const Field& f : fields_) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, f.key);
    out += ':';
    if (f.ops.size() == 1) {
      // One operator: typed (a number, or null when unset).
      append_value(f.ops.front(), record, out, true);
    } else {
      // A template: a string, with "-" for unset parts.
      std::string s;
      for (const Op& op : f.ops) append_value(op, record, s, false);
      append_json_string(out, s);
    }
  }
  out += "}\n";
}

}  // namespace sluice::telemetry
