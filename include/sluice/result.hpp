#pragma once
// Error values for the configuration path. The data path never throws; it
// reports failures as response flags (see proxy/).

#include <string>
#include <utility>
#include <variant>

namespace sluice {

// A configuration error names the object and the field at fault, e.g.
// `VirtualService reviews: http[1].route[0].weight: must be >= 0`.
struct Error {
  std::string object;   // "Router main", "VirtualService reviews"; may be empty
  std::string field;    // "virtual_hosts[0].routes[2].matches[0].uri"; may be empty
  std::string message;  // what is wrong

  std::string to_string() const {
    std::string out = object;
    if (!field.empty()) out += (out.empty() ? "" : ": ") + field;
    if (!out.empty()) out += ": ";
    return out + message;
  }
};

// Minimal expected<T, Error>; C++20 has no std::expected.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace sluice
