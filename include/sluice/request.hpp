#pragma once
// Plain value types for HTTP messages as host code and hooks see them.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

// Ordered header list. Names keep the case they arrived with; look-ups are
// case-insensitive. Repeated names are kept as separate entries.
class Headers {
 public:
  using Entry = std::pair<std::string, std::string>;

  void add(std::string name, std::string value) {
    entries_.emplace_back(std::move(name), std::move(value));
  }
  // Replaces every entry named `name` with one entry.
  void set(std::string_view name, std::string value);
  // Removes every entry named `name`; returns how many were removed.
  size_t remove(std::string_view name);
  // First value for `name`, if any.
  std::optional<std::string_view> get(std::string_view name) const;
  size_t count(std::string_view name) const;
  bool contains(std::string_view name) const { return get(name).has_value(); }

  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& entries() { return entries_; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  void clear() { entries_.clear(); }
  void reserve(size_t n) { entries_.reserve(n); }

 private:
  std::vector<Entry> entries_;
};

// A request head as routing and hooks see it.
struct RequestHead {
  std::string method = "GET";
  std::string target = "/";  // origin-form: path and optional ?query
  std::string authority;     // Host header value (":authority")
  std::string scheme = "http";
  int version_minor = 1;  // HTTP/1.x
  Headers headers;
  uint16_t listener_port = 0;

  std::string_view path() const;   // target up to '?'
  std::string_view query() const;  // after '?', without it; empty if none
};

struct ResponseHead {
  uint16_t status = 200;
  std::string reason;  // empty: the standard reason phrase
  int version_minor = 1;
  Headers headers;
};

// A complete response made by the gateway or by a hook.
struct Response {
  uint16_t status = 200;
  Headers headers;
  std::string body;
};

// Standard reason phrase for a status code ("OK", "Not Found", ...).
std::string_view reason_phrase(uint16_t status);

}  // namespace sluice
