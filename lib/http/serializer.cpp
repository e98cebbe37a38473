#include "http/serializer.hpp"

#include <fmt/format.h>

#include <array>

namespace sluice::http {

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kNames = {
      "connection", "keep-alive",        "proxy-connection", "te",
      "trailer",    "transfer-encoding", "upgrade",          "proxy-authenticate"};
  for (auto n : kNames)
    if (iequals(n, name)) return true;
  return false;
}

void strip_hop_by_hop(Headers& headers) {
  // Names listed in Connection are hop-by-hop too (RFC 9110 7.6.1).
  std::vector<std::string> listed;
  for (const auto& [name, value] : headers.entries()) {
    if (!iequals(name, "connection")) continue;
    std::string_view v = value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view token = v.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
        token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      if (!token.empty()) listed.emplace_back(token);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  auto& e = headers.entries();
  std::erase_if(e, [&](const Headers::Entry& h) {
    if (is_hop_by_hop(h.first)) return true;
    for (const auto& l : listed)
      if (iequals(l, h.first)) return true;
    return false;
  });
}

namespace {
void append_headers(std::string& out, const Headers& headers) {
  for (const auto& [name, value] : headers.entries()) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
}
}  // namespace

void append_request_head(std::string& out, const RequestHead& head) {
  out += head.method;
  out += ' ';
  out += head.target;
  out += " HTTP/1.1\r\n";
  append_headers(out, head.headers);
}

void append_response_head(std::string& out, const ResponseHead& head) {
  out += "HTTP/1.1 ";
  fmt::format_to(std::back_inserter(out), "{} ", head.status);
  out += head.reason.empty() ? reason_phrase(head.status) : std::string_view(head.reason);
  out += "\r\n";
  append_headers(out, head.headers);
}

void append_chunk_header(std::string& out, size_t size) {
  fmt::format_to(std::back_inserter(out), "{:x}\r\n", size);
}

std::string serialize_response(const Response& response, bool head_request, bool close) {
  ResponseHead head;
  head.status = response.status;
  head.headers = response.headers;
  bool bodyless = response.status == 204 || response.status == 304 || response.status < 200;
  if (!bodyless) head.headers.set("content-length", std::to_string(response.body.size()));
  if (!response.body.empty() && !head.headers.contains("content-type"))
    head.headers.add("content-type", "text/plain");
  if (close) head.headers.set("connection", "close");
  std::string out;
  append_response_head(out, head);
  if (!head_request && !bodyless) out += response.body;
  return out;
}

}  // namespace sluice::http
