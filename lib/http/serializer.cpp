#include "http/serializer.hpp"

#include "http/tokens.hpp"

#include <algorithm>
#include <array>
#include <bitset>
#include <charconv>
#include <vector>

namespace sluice::http {

namespace {

// Names the forwarding path looks at, classified once per header by length
// first so most names cost one comparison at most.
enum class Known {
  other,
  connection,
  keep_alive,
  proxy_connection,
  te,
  trailer,
  transfer_encoding,
  upgrade,
  proxy_authenticate,
  expect,
  host,
  content_length,
  x_forwarded_for,
  x_forwarded_proto,
  x_forwarded_client_cert,
  x_request_id,
};

Known classify(std::string_view n) {
  switch (n.size()) {
    case 2:
      return iequals(n, "te") ? Known::te : Known::other;
    case 4:
      return iequals(n, "host") ? Known::host : Known::other;
    case 6:
      return iequals(n, "expect") ? Known::expect : Known::other;
    case 7:
      if (iequals(n, "trailer")) return Known::trailer;
      return iequals(n, "upgrade") ? Known::upgrade : Known::other;
    case 10:
      if (iequals(n, "connection")) return Known::connection;
      return iequals(n, "keep-alive") ? Known::keep_alive : Known::other;
    case 12:
      return iequals(n, "x-request-id") ? Known::x_request_id : Known::other;
    case 14:
      return iequals(n, "content-length") ? Known::content_length : Known::other;
    case 15:
      return iequals(n, "x-forwarded-for") ? Known::x_forwarded_for : Known::other;
    case 16:
      return iequals(n, "proxy-connection") ? Known::proxy_connection : Known::other;
    case 17:
      if (iequals(n, "transfer-encoding")) return Known::transfer_encoding;
      return iequals(n, "x-forwarded-proto") ? Known::x_forwarded_proto : Known::other;
    case 18:
      return iequals(n, "proxy-authenticate") ? Known::proxy_authenticate : Known::other;
    case 23:
      return iequals(n, "x-forwarded-client-cert") ? Known::x_forwarded_client_cert : Known::other;
    default:
      return Known::other;
  }
}

bool hop_by_hop(Known k) {
  switch (k) {
    case Known::connection:
    case Known::keep_alive:
    case Known::proxy_connection:
    case Known::te:
    case Known::trailer:
    case Known::transfer_encoding:
    case Known::upgrade:
    case Known::proxy_authenticate:
      return true;
    default:
      return false;
  }
}

// True when `name` is listed by any Connection header among `headers`.
bool named_by_connection(const Headers& headers, std::string_view name) {
  bool found = false;
  for (const auto& [n, v] : headers.entries())
    if (n.size() == 10 && iequals(n, "connection"))
      for_each_list_item(v, [&](std::string_view t) { found |= iequals(t, name); });
  return found;
}

// Writes "name: value\r\n" at `p`, which has room for it.
char* put_header(char* p, std::string_view name, std::string_view value) {
  p = std::copy(name.begin(), name.end(), p);
  *p++ = ':';
  *p++ = ' ';
  p = std::copy(value.begin(), value.end(), p);
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

// One resize per line, not four appends: the buffer keeps its capacity
// from one message to the next, so this only moves bytes.
void append_header(std::string& out, std::string_view name, std::string_view value) {
  size_t at = out.size();
  out.resize(at + name.size() + value.size() + 4);
  put_header(out.data() + at, name, value);
}

void append_headers(std::string& out, const Headers& headers) {
  size_t size = 2;
  for (const auto& [name, value] : headers.entries()) size += name.size() + value.size() + 4;
  size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  for (const auto& [name, value] : headers.entries()) p = put_header(p, name, value);
  p[0] = '\r';
  p[1] = '\n';
}

}  // namespace

bool is_hop_by_hop(std::string_view name) {
  return hop_by_hop(classify(name));
}

bool is_forwardable_trailer(std::string_view name) {
  if (name.empty() || name.front() == ':') return false;
  // Hop-by-hop, framing, host, expect, and the forwarding headers the
  // gateway itself sets.
  if (classify(name) != Known::other) return false;
  static constexpr std::array<std::string_view, 12> kNever = {
      "authorization", "proxy-authorization", "cookie",        "set-cookie",
      "content-type",  "content-encoding",    "content-range", "max-forwards",
      "range",         "cache-control",       "location",      "www-authenticate"};
  for (std::string_view n : kNever)
    if (iequals(name, n)) return false;
  return true;
}

void append_last_chunk(std::string& out, const Headers& trailers) {
  out += "0\r\n";
  for (const auto& [name, value] : trailers.entries())
    if (is_forwardable_trailer(name)) append_header(out, name, value);
  out += "\r\n";
}

void strip_hop_by_hop(Headers& headers) {
  // Names listed in Connection are hop-by-hop too (RFC 9110 7.6.1), except
  // Host and Content-Length: framing and authority come from the parsed
  // message, and a peer must not be able to name them away. Decide for every
  // entry before moving any, so Connection values stay readable.
  auto& e = headers.entries();
  // The listed names that could matter (not hop-by-hop anyway), gathered
  // once: a response's "Connection: keep-alive" then costs no per-entry
  // rescan. More than fit fall back to scanning the values per entry.
  constexpr size_t kListed = 8;
  std::array<std::string_view, kListed> listed;
  size_t n_listed = 0;
  bool overflow = false;
  for (const auto& [n, v] : e)
    if (n.size() == 10 && iequals(n, "connection"))
      for_each_list_item(v, [&](std::string_view t) {
        if (classify(t) != Known::other) return;
        if (n_listed == kListed)
          overflow = true;
        else
          listed[n_listed++] = t;
      });
  auto is_listed = [&](std::string_view name) {
    if (overflow) return named_by_connection(headers, name);
    for (size_t i = 0; i < n_listed; ++i)
      if (iequals(listed[i], name)) return true;
    return false;
  };
  auto drop = [&](const Headers::Entry& h) {
    Known k = classify(h.first);
    return hop_by_hop(k) || (k == Known::other && n_listed > 0 && is_listed(h.first));
  };
  constexpr size_t kMarks = 256;
  if (e.size() > kMarks) {
    std::vector<bool> marks(e.size());
    for (size_t i = 0; i < e.size(); ++i) marks[i] = drop(e[i]);
    size_t i = 0;
    std::erase_if(e, [&](const Headers::Entry&) { return marks[i++]; });
    return;
  }
  std::bitset<kMarks> marks;
  for (size_t i = 0; i < e.size(); ++i) marks[i] = drop(e[i]);
  if (marks.none()) return;
  size_t i = 0;
  std::erase_if(e, [&](const Headers::Entry&) { return marks[i++]; });
}

bool append_forwarded_request_head(std::string& out, const RequestHead& head, const Forwarding& f) {
  out += head.method;
  out += ' ';
  out += head.target;
  out += " HTTP/1.1\r\n";
  bool expect_continue = false;
  bool has_xff = false;
  bool has_request_id = false;
  bool has_host = false;
  const auto& entries = head.headers.entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& [name, value] = entries[i];
    Known k = classify(name);
    if (hop_by_hop(k)) continue;
    switch (k) {
      case Known::content_length:
        continue;  // framing is written below, from the parsed message
      case Known::expect:
        if (iequals(value, "100-continue")) {
          expect_continue = true;
          continue;
        }
        break;
      case Known::x_forwarded_for:
        // Merged into the first one, with the client appended.
        if (has_xff) continue;
        has_xff = true;
        out += name;
        out += ": ";
        out += value;
        for (size_t j = i + 1; j < entries.size(); ++j) {
          const auto& [n2, v2] = entries[j];
          if (n2.size() == 15 && iequals(n2, "x-forwarded-for")) {
            out += ", ";
            out += v2;
          }
        }
        out += ", ";
        out += f.client_ip;
        out += "\r\n";
        continue;
      case Known::x_forwarded_proto:
      case Known::x_forwarded_client_cert:
        continue;
      case Known::x_request_id:
        has_request_id = true;
        break;
      case Known::host:
        if (has_host || !f.host.empty()) continue;  // one Host, the override if any
        has_host = true;
        break;
      default:
        break;
    }
    append_header(out, name, value);
  }
  if (!f.host.empty())
    append_header(out, "host", f.host);
  else if (!has_host && !f.default_host.empty())
    append_header(out, "host", f.default_host);
  if (!has_xff) append_header(out, "x-forwarded-for", f.client_ip);
  append_header(out, "x-forwarded-proto", f.proto);
  if (!f.xfcc.empty()) append_header(out, "x-forwarded-client-cert", f.xfcc);
  if (!has_request_id && !f.request_id.empty()) append_header(out, "x-request-id", f.request_id);
  if (f.chunked) {
    append_header(out, "transfer-encoding", "chunked");
  } else if (f.content_length) {
    char digits[24];
    auto r = std::to_chars(digits, digits + sizeof(digits), *f.content_length);
    append_header(out, "content-length", std::string_view(digits, r.ptr - digits));
  }
  if (f.close) {
    append_header(out, "connection", "close");
  } else if (!f.upgrade.empty()) {
    append_header(out, "connection", "upgrade");
    append_header(out, "upgrade", f.upgrade);
  }
  out += "\r\n";
  return expect_continue;
}

void append_request_head(std::string& out, const RequestHead& head) {
  out += head.method;
  out += ' ';
  out += head.target;
  out += " HTTP/1.1\r\n";
  append_headers(out, head.headers);
}

void append_response_head(std::string& out, const ResponseHead& head) {
  char status[4] = {char('0' + head.status / 100 % 10), char('0' + head.status / 10 % 10),
                    char('0' + head.status % 10), ' '};
  out += "HTTP/1.1 ";
  out.append(status, 4);
  out += head.reason.empty() ? reason_phrase(head.status) : std::string_view(head.reason);
  out += "\r\n";
  append_headers(out, head.headers);
}

void append_chunk_header(std::string& out, size_t size) {
  char buf[20];
  auto r = std::to_chars(buf, buf + sizeof(buf), size, 16);
  out.append(buf, r.ptr);
  out += "\r\n";
}

}  // namespace sluice::http
