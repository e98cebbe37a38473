// Headers, RequestHead accessors and reason phrases (include/sluice/request.hpp).

#include <algorithm>

#include "http/tokens.hpp"
#include "sluice/request.hpp"

namespace sluice {

using http::iequals;

void Headers::set(std::string_view name, std::string value) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return iequals(e.first, name); });
  if (it == entries_.end()) {
    entries_.emplace_back(std::string(name), std::move(value));
    return;
  }
  it->second = std::move(value);
  auto next = std::next(it);
  entries_.erase(
      std::remove_if(next, entries_.end(), [&](const Entry& e) { return iequals(e.first, name); }),
      entries_.end());
}

size_t Headers::remove(std::string_view name) {
  auto before = entries_.size();
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return iequals(e.first, name); }),
                 entries_.end());
  return before - entries_.size();
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& e : entries_)
    if (iequals(e.first, name)) return std::string_view(e.second);
  return std::nullopt;
}

size_t Headers::count(std::string_view name) const {
  return std::count_if(entries_.begin(), entries_.end(),
                       [&](const Entry& e) { return iequals(e.first, name); });
}

std::string_view RequestHead::path() const {
  auto q = target.find('?');
  return std::string_view(target).substr(0, q);
}

std::string_view RequestHead::query() const {
  auto q = target.find('?');
  if (q == std::string::npos) return {};
  return std::string_view(target).substr(q + 1);
}

std::string_view reason_phrase(uint16_t status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace sluice
