// The `sluice._sluice` extension: Gateway, RequestContext, Headers and
// ManualClock. The friendlier surface (config dataclasses, Response,
// ConfigError, the pytest plugin) is plain Python in sluice/.
//
// Threads and the GIL: the gateway's workers never hold the GIL except for
// the duration of one Python hook call. Every Gateway method that waits on
// the gateway (apply, stop, explain, ...) releases it, so a hook can run
// while Python code waits.

#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "embedded.hpp"
#include "http/tokens.hpp"

namespace py = pybind11;
using nlohmann::json;

namespace sluice::python {
namespace {

// ---- errors -------------------------------------------------------------

[[noreturn]] void raise_config_error(const Error& e) {
  py::object cls = py::module_::import("sluice._errors").attr("ConfigError");
  PyErr_SetObject(cls.ptr(), cls(e.to_string(), e.object, e.field, e.message).ptr());
  throw py::error_already_set();
}

void check(const Status& s) {
  if (!s) raise_config_error(s.error());
}

py::object to_python(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return py::none();
    case json::value_t::boolean:
      return py::bool_(j.get<bool>());
    case json::value_t::number_integer:
      return py::int_(j.get<int64_t>());
    case json::value_t::number_unsigned:
      return py::int_(j.get<uint64_t>());
    case json::value_t::number_float:
      return py::float_(j.get<double>());
    case json::value_t::string:
      return py::str(j.get_ref<const std::string&>());
    case json::value_t::array: {
      py::list out;
      for (const auto& v : j) out.append(to_python(v));
      return out;
    }
    case json::value_t::object: {
      py::dict out;
      for (const auto& [k, v] : j.items()) out[py::str(k)] = to_python(v);
      return out;
    }
    default:
      return py::none();
  }
}

// ---- hooks --------------------------------------------------------------

// Python objects handed to a hook point into the request only while the
// hook runs; `alive` turns false after, and they refuse to be used.
using Alive = std::shared_ptr<bool>;

void check_alive(const Alive& alive) {
  if (!*alive)
    throw py::value_error("a RequestContext (and its headers) is valid only during its hook");
}

struct PyHeaders {
  Headers* headers;
  bool writable;
  Alive alive;

  Headers& get() const {
    check_alive(alive);
    return *headers;
  }
  Headers& edit() const {
    check_alive(alive);
    if (!writable) throw py::value_error("these headers are read-only in this hook");
    return *headers;
  }
};

struct PyContext {
  RequestContext* ctx;
  ResponseHead* response;  // on_response_headers only
  PeerChoice* peer;        // on_upstream_chosen only
  bool writable;
  Alive alive;

  RequestContext& get() const {
    check_alive(alive);
    return *ctx;
  }
  RequestHead& edit() const {
    check_alive(alive);
    if (!writable) throw py::value_error("the request is read-only in this hook");
    return ctx->request;
  }
};

std::optional<Response> to_response(py::handle o) {
  if (o.is_none()) return std::nullopt;
  if (!py::hasattr(o, "status") || !py::hasattr(o, "body"))
    throw py::type_error("a hook returns None or a sluice.Response");
  Response r;
  r.status = attr<uint16_t>(o, "status");
  py::object body = o.attr("body");
  r.body = py::isinstance<py::bytes>(body) ? body.cast<std::string>()
                                           : py::str(body).cast<std::string>();
  py::object headers = o.attr("headers");
  py::iterable items = py::isinstance<py::dict>(headers) ? headers.attr("items")() : headers;
  for (py::handle kv : items) {
    auto pair = kv.cast<std::pair<std::string, std::string>>();
    r.headers.add(std::move(pair.first), std::move(pair.second));
  }
  return r;
}

class PyHooks final : public Hooks {
 public:
  PyHooks(py::object on_request, py::object on_upstream_chosen, py::object on_response_headers,
          py::object on_log)
      : on_request_(std::move(on_request)),
        on_upstream_(std::move(on_upstream_chosen)),
        on_response_headers_(std::move(on_response_headers)),
        on_log_(std::move(on_log)),
        // Read without the GIL on every request: hooks left unset cost no GIL.
        has_request_(!on_request_.is_none()),
        has_upstream_(!on_upstream_.is_none()),
        has_response_headers_(!on_response_headers_.is_none()),
        has_log_(!on_log_.is_none()) {}

  ~PyHooks() override {
    py::gil_scoped_acquire gil;
    on_request_ = py::object();
    on_upstream_ = py::object();
    on_response_headers_ = py::object();
    on_log_ = py::object();
  }

  std::optional<Response> on_request(RequestContext& ctx) override {
    if (!has_request_) return std::nullopt;
    py::gil_scoped_acquire gil;
    return call(on_request_, PyContext{&ctx, nullptr, nullptr, true, std::make_shared<bool>(true)},
                true);
  }

  std::optional<Response> upstream_peer(RequestContext& ctx, PeerChoice& peer) override {
    if (!has_upstream_) return std::nullopt;
    py::gil_scoped_acquire gil;
    return call(on_upstream_, PyContext{&ctx, nullptr, &peer, true, std::make_shared<bool>(true)},
                true);
  }

  void on_response_headers(RequestContext& ctx, ResponseHead& head) override {
    if (!has_response_headers_) return;
    py::gil_scoped_acquire gil;
    call(on_response_headers_, PyContext{&ctx, &head, nullptr, false, std::make_shared<bool>(true)},
         false);
  }

  void on_log(const RequestContext& ctx) override {
    if (!has_log_) return;
    py::gil_scoped_acquire gil;
    // const_cast: the context object refuses edits (writable is false).
    call(on_log_,
         PyContext{const_cast<RequestContext*>(&ctx), nullptr, nullptr, false,
                   std::make_shared<bool>(true)},
         false);
  }

  std::vector<std::string> errors() {
    std::lock_guard lock(mutex_);
    return errors_;
  }

 private:
  // A hook that raises is reported (hook_errors, and Python's unraisable
  // hook); a request whose on_request or on_upstream_chosen raised is
  // answered 500, as Envoy answers a failed Lua filter.
  std::optional<Response> call(const py::object& fn, PyContext context, bool may_answer) {
    Alive alive = context.alive;
    std::optional<Response> out;
    try {
      py::object result = fn(py::cast(std::move(context)));
      if (may_answer) out = to_response(result);
    } catch (py::error_already_set& e) {
      record(e.what());
      if (may_answer) out = failed();
    } catch (const std::exception& e) {
      record(e.what());
      if (may_answer) out = failed();
    }
    *alive = false;
    return out;
  }

  static Response failed() {
    Response r;
    r.status = 500;
    r.body = "hook failed\n";
    return r;
  }

  void record(std::string what) {
    std::lock_guard lock(mutex_);
    if (errors_.size() < 100) errors_.push_back(std::move(what));
  }

  py::object on_request_, on_upstream_, on_response_headers_, on_log_;
  const bool has_request_, has_upstream_, has_response_headers_, has_log_;
  std::mutex mutex_;
  std::vector<std::string> errors_;
};

// ---- clock --------------------------------------------------------------

using embed::ManualClock;

// Any Python object with a now() as the gateway's clock: now() returns
// seconds (a number), a timedelta (total_seconds()) or a datetime
// (timestamp()). Only its differences matter: the gateway's steady and wall
// clocks start at the real time when the Gateway is made and move by as
// much as now() has since. It is read on the gateway's threads, taking the
// GIL for each read; a value that goes back, or a raising now(), reads as
// the last good value (the error goes to Gateway.hook_errors).
class PyClock {
 public:
  explicit PyClock(py::object source)
      : source_(std::move(source)),
        steady_(std::chrono::steady_clock::now()),
        wall_(std::chrono::system_clock::now()) {
    first_ = last_ = read();
  }
  ~PyClock() {
    py::gil_scoped_acquire gil;
    source_ = py::object();
  }

  std::chrono::nanoseconds elapsed() {
    py::gil_scoped_acquire gil;
    try {
      double v = read();
      if (v > last_) last_ = v;
    } catch (const std::exception& e) {  // raised, or returned a wrong type
      std::lock_guard lock(mutex_);
      if (errors_.size() < 100) errors_.push_back(std::string("clock.now(): ") + e.what());
    }
    return std::chrono::nanoseconds(std::llround((last_ - first_) * 1e9));
  }
  std::chrono::steady_clock::time_point now() { return steady_ + elapsed(); }
  std::chrono::system_clock::time_point wall_now() {
    return wall_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(elapsed());
  }
  std::vector<std::string> errors() const {
    std::lock_guard lock(mutex_);
    return errors_;
  }

 private:
  // Needs the GIL.
  double read() const {
    py::object v = source_.attr("now")();
    if (py::hasattr(v, "total_seconds")) return v.attr("total_seconds")().cast<double>();
    if (py::hasattr(v, "timestamp")) return v.attr("timestamp")().cast<double>();
    if (py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)) return v.cast<double>();
    throw py::type_error("clock.now() returns seconds, a timedelta or a datetime, not " +
                         py::repr(v).cast<std::string>());
  }

  py::object source_;
  std::chrono::steady_clock::time_point steady_;
  std::chrono::system_clock::time_point wall_;
  double first_ = 0, last_ = 0;  // under the GIL
  mutable std::mutex mutex_;     // errors_
  std::vector<std::string> errors_;
};

// ---- Gateway ------------------------------------------------------------

std::atomic<uint64_t> live_gateways{0};

class Gateway {
 public:
  Gateway(std::optional<std::string> yaml, std::optional<std::vector<std::string>> paths,
          py::object config, unsigned workers, uint64_t seed, std::string bind, py::object clock,
          py::object on_request, py::object on_upstream_chosen, py::object on_response_headers,
          py::object on_log, bool start) {
    int sources = (yaml ? 1 : 0) + (paths ? 1 : 0) + (config.is_none() ? 0 : 1);
    if (sources > 1) throw py::value_error("give one of yaml=, paths= or config=");
    if (workers == 0) throw py::value_error("workers must be at least 1");
    embed::Options o;
    o.workers = workers;
    o.seed = seed;
    o.bind = std::move(bind);
    if (py::isinstance<ManualClock>(clock)) {
      o.manual_clock = clock.cast<std::shared_ptr<ManualClock>>();
    } else if (!clock.is_none()) {
      if (!py::hasattr(clock, "now"))
        throw py::type_error("clock= takes a sluice.ManualClock or an object with a now() method");
      auto c = std::make_shared<PyClock>(clock);
      py_clock_ = c;
      o.clock = [c] { return c->now(); };
      o.wall_clock = [c] { return c->wall_now(); };
    }
    hooks_ = std::make_shared<PyHooks>(std::move(on_request), std::move(on_upstream_chosen),
                                       std::move(on_response_headers), std::move(on_log));
    o.hooks = hooks_;
    {
      // A Python clock may be read by the gateway's threads from here on.
      py::gil_scoped_release release;
      embedded_ = std::make_unique<embed::Embedded>(std::move(o));
    }
    try {
      if (sources == 1) apply(std::move(yaml), std::move(paths), std::move(config));
      if (start) this->start();
    } catch (...) {
      close();  // no destructor runs for a constructor that throws
      throw;
    }
    ++live_gateways;
  }

  ~Gateway() {
    close();
    --live_gateways;
  }

  void close() {
    {
      // Stopping waits for hooks in flight, which need the GIL.
      py::gil_scoped_release release;
      embedded_.reset();
    }
    hooks_.reset();
  }

  // After a clock= object other than ManualClock moved (ManualClock.advance
  // does this itself).
  void clock_advanced() {
    py::gil_scoped_release release;
    live().clock_advanced();
  }

  py::object config_dump() const {
    std::string text = [&] {
      py::gil_scoped_release release;
      return live().config_dump();
    }();
    return to_python(json::parse(text));
  }

  void apply(std::optional<std::string> yaml, std::optional<std::vector<std::string>> paths,
             py::object config) {
    int sources = (yaml ? 1 : 0) + (paths ? 1 : 0) + (config.is_none() ? 0 : 1);
    if (sources != 1) throw py::value_error("give exactly one of yaml=, paths= or config=");
    Status s;
    if (!config.is_none()) {
      GatewayConfig c = gateway_config(config);  // needs the GIL; applying does not
      py::gil_scoped_release release;
      s = live().apply_config(std::move(c));
    } else if (yaml) {
      py::gil_scoped_release release;
      s = live().apply_yaml(*yaml);
    } else {
      py::gil_scoped_release release;
      s = live().apply_paths(*paths);
    }
    check(s);
  }

  void start() {
    py::gil_scoped_release release;
    live().start();
  }

  void stop() {
    py::gil_scoped_release release;
    if (embedded_) embedded_->stop();
  }

  uint16_t port(py::handle key) const {
    std::string k = py::str(key);
    uint16_t p;
    {
      py::gil_scoped_release release;
      p = live().port(k);
    }
    if (p == 0) throw py::key_error("no listener named or declaring port " + k);
    return p;
  }

  std::string url(py::handle key) const {
    std::string k = py::str(key);
    std::string u;
    {
      py::gil_scoped_release release;
      u = live().url(k);
    }
    if (u.empty()) throw py::key_error("no listener named or declaring port " + k);
    return u;
  }

  py::object explain(const std::string& method, const std::string& url, py::dict headers) const {
    std::vector<std::pair<std::string, std::string>> hs;
    for (auto [k, v] : headers) hs.emplace_back(py::str(k), py::str(v));
    Result<json> r = [&] {
      py::gil_scoped_release release;
      return live().explain(method, url, hs);
    }();
    if (!r) throw py::value_error(r.error().to_string());
    return to_python(r.value());
  }

  py::object upstream(const std::string& name) const {
    Result<json> r = [&] {
      py::gil_scoped_release release;
      return live().upstream(name);
    }();
    if (!r) throw py::key_error(r.error().to_string());
    return to_python(r.value());
  }

  py::object stats() const {
    json j = [&] {
      py::gil_scoped_release release;
      return live().stats();
    }();
    return to_python(j);
  }

  std::string prometheus() const {
    py::gil_scoped_release release;
    return live().prometheus();
  }

  std::vector<std::string> listeners() const { return live().listeners(); }
  std::vector<std::string> hook_errors() const {
    std::vector<std::string> out = hooks_ ? hooks_->errors() : std::vector<std::string>{};
    if (py_clock_)
      for (auto& e : py_clock_->errors()) out.push_back(std::move(e));
    return out;
  }

 private:
  embed::Embedded& live() const {
    if (!embedded_) throw py::value_error("the gateway is closed");
    return *embedded_;
  }

  std::shared_ptr<PyClock> py_clock_;
  std::shared_ptr<PyHooks> hooks_;
  std::unique_ptr<embed::Embedded> embedded_;
};

py::list header_items(const Headers& h) {
  py::list out;
  for (const auto& [n, v] : h.entries()) out.append(py::make_tuple(n, v));
  return out;
}

void bind_hooks(py::module_& m) {
  py::class_<PyHeaders>(m, "Headers", "A header list seen from a hook. Names are case-insensitive.")
      .def(
          "get",
          [](const PyHeaders& h, const std::string& name, py::object dflt) -> py::object {
            auto v = h.get().get(name);
            return v ? py::str(std::string(*v)) : dflt;
          },
          py::arg("name"), py::arg("default") = py::none(),
          "First value of `name`, else `default`.")
      .def(
          "get_all",
          [](const PyHeaders& h, const std::string& name) {
            std::vector<std::string> out;
            for (const auto& [n, v] : h.get().entries())
              if (http::iequals(n, name)) out.push_back(v);
            return out;
          },
          py::arg("name"), "Every value of `name`, in order.")
      .def("__getitem__",
           [](const PyHeaders& h, const std::string& name) {
             auto v = h.get().get(name);
             if (!v) throw py::key_error(name);
             return std::string(*v);
           })
      .def("__setitem__", [](const PyHeaders& h, const std::string& name,
                             std::string value) { h.edit().set(name, std::move(value)); })
      .def("__delitem__",
           [](const PyHeaders& h, const std::string& name) { h.edit().remove(name); })
      .def("__contains__",
           [](const PyHeaders& h, const std::string& name) { return h.get().contains(name); })
      .def("__len__", [](const PyHeaders& h) { return h.get().size(); })
      .def(
          "set",
          [](const PyHeaders& h, const std::string& name, std::string value) {
            h.edit().set(name, std::move(value));
          },
          "Replaces every `name` entry with one.")
      .def(
          "add",
          [](const PyHeaders& h, std::string name, std::string value) {
            h.edit().add(std::move(name), std::move(value));
          },
          "Appends an entry.")
      .def(
          "remove",
          [](const PyHeaders& h, const std::string& name) { return h.edit().remove(name); },
          "Removes every `name` entry; returns how many.")
      .def(
          "items", [](const PyHeaders& h) { return header_items(h.get()); },
          "(name, value) pairs in order.");

  py::class_<PyContext>(m, "RequestContext",
                        "One request as a hook sees it. Valid only during the hook call.")
      .def_property(
          "method", [](const PyContext& c) { return c.get().request.method; },
          [](const PyContext& c, std::string v) { c.edit().method = std::move(v); })
      .def_property(
          "target", [](const PyContext& c) { return c.get().request.target; },
          [](const PyContext& c, std::string v) { c.edit().target = std::move(v); },
          "Path and query.")
      .def_property_readonly("path",
                             [](const PyContext& c) { return std::string(c.get().request.path()); })
      .def_property(
          "authority", [](const PyContext& c) { return c.get().request.authority; },
          [](const PyContext& c, std::string v) { c.edit().authority = std::move(v); })
      .def_property_readonly("scheme", [](const PyContext& c) { return c.get().request.scheme; })
      .def_property_readonly(
          "headers",
          [](const PyContext& c) {
            return PyHeaders{&c.get().request.headers, c.writable, c.alive};
          },
          "The request headers (editable in on_request and on_upstream_chosen).")
      .def_property_readonly(
          "response_headers",
          [](const PyContext& c) -> py::object {
            c.get();
            if (!c.response) return py::none();
            return py::cast(PyHeaders{&c.response->headers, true, c.alive});
          },
          "on_response_headers: the response headers (editable); else None.")
      .def_property(
          "response_status",
          [](const PyContext& c) -> int {
            return c.response ? c.response->status : c.get().response_status;
          },
          [](const PyContext& c, uint16_t status) {
            c.get();
            if (!c.response)
              throw py::value_error("response_status is set in on_response_headers only");
            c.response->status = status;
          },
          "Status of the response (settable in on_response_headers).")
      .def_property_readonly("client_address",
                             [](const PyContext& c) { return std::string(c.get().client_address); })
      .def_property_readonly("listener",
                             [](const PyContext& c) { return std::string(c.get().listener); })
      .def_property_readonly("virtual_host",
                             [](const PyContext& c) { return std::string(c.get().virtual_host); })
      .def_property_readonly("route", [](const PyContext& c) { return std::string(c.get().route); })
      .def_property_readonly("upstream",
                             [](const PyContext& c) {
                               return std::string(c.peer ? c.peer->upstream() : c.get().upstream);
                             })
      .def_property_readonly(
          "endpoint",
          [](const PyContext& c) {
            return std::string(c.peer ? c.peer->endpoint_key() : c.get().endpoint);
          })
      .def_property_readonly("response_flags",
                             [](const PyContext& c) { return to_string(c.get().response_flags); })
      .def_property_readonly(
          "response_code_details",
          [](const PyContext& c) { return std::string(c.get().response_code_details); })
      .def_property_readonly("attempts", [](const PyContext& c) { return c.get().attempts; })
      .def_property_readonly("bytes_received",
                             [](const PyContext& c) { return c.get().bytes_received; })
      .def_property_readonly("bytes_sent", [](const PyContext& c) { return c.get().bytes_sent; })
      .def_property_readonly(
          "duration", [](const PyContext& c) { return c.get().duration.count() / 1e6; },
          "Seconds, in on_log.")
      .def(
          "use_endpoint",
          [](const PyContext& c, py::object which) {
            c.get();
            if (!c.peer) throw py::value_error("use_endpoint works in on_upstream_chosen only");
            if (py::isinstance<py::int_>(which)) return c.peer->use_endpoint(which.cast<size_t>());
            return c.peer->use_endpoint(which.cast<std::string>());
          },
          py::arg("endpoint"),
          "on_upstream_chosen: send to this endpoint (index or \"ip:port\"); False if there is "
          "none.")
      .def(
          "use_upstream",
          [](const PyContext& c, const std::string& name) {
            c.get();
            if (!c.peer) throw py::value_error("use_upstream works in on_upstream_chosen only");
            return c.peer->use_upstream(name);
          },
          py::arg("name"),
          "on_upstream_chosen: send to another configured upstream; False if unknown.");
}

}  // namespace
}  // namespace sluice::python

PYBIND11_MODULE(_sluice, m) {
  using namespace sluice::python;
  namespace embed = sluice::embed;
  m.doc() = "sluice's C++ core; use the `sluice` package.";
  m.attr("__version__") = embed::version();

  py::class_<ManualClock, std::shared_ptr<ManualClock>>(
      m, "ManualClock", "Time that moves only by advance(): give it to Gateway(clock=...).")
      .def(py::init<>())
      .def(
          "advance",
          [](ManualClock& c, double seconds) {
            if (seconds < 0) throw py::value_error("a clock cannot go back");
            py::gil_scoped_release release;  // the gateways' hooks may need it meanwhile
            c.advance(std::chrono::nanoseconds(std::llround(seconds * 1e9)));
          },
          py::arg("seconds"),
          "Moves time forward and lets every gateway on this clock run what is now due.")
      .def(
          "now", [](const ManualClock& c) { return c.elapsed().count() / 1e9; },
          "Seconds advanced so far (as a clock= object's now() would say).")
      .def_property_readonly(
          "elapsed", [](const ManualClock& c) { return c.elapsed().count() / 1e9; },
          "Seconds advanced so far.");

  bind_hooks(m);

  py::class_<Gateway>(m, "Gateway")
      .def(py::init<std::optional<std::string>, std::optional<std::vector<std::string>>, py::object,
                    unsigned, uint64_t, std::string, py::object, py::object, py::object, py::object,
                    py::object, bool>(),
           py::kw_only(), py::arg("yaml") = py::none(), py::arg("paths") = py::none(),
           py::arg("config") = py::none(), py::arg("workers") = 1, py::arg("seed") = 0,
           py::arg("bind") = "127.0.0.1", py::arg("clock") = py::none(),
           py::arg("on_request") = py::none(), py::arg("on_upstream_chosen") = py::none(),
           py::arg("on_response_headers") = py::none(), py::arg("on_log") = py::none(),
           py::arg("start") = true)
      .def("apply", &Gateway::apply, py::kw_only(), py::arg("yaml") = py::none(),
           py::arg("paths") = py::none(), py::arg("config") = py::none())
      .def("start", &Gateway::start)
      .def("stop", &Gateway::stop)
      .def("port", &Gateway::port, py::arg("listener"))
      .def("url", &Gateway::url, py::arg("listener"))
      .def("explain", &Gateway::explain, py::arg("method"), py::arg("url"),
           py::arg("headers") = py::dict())
      .def("upstream", &Gateway::upstream, py::arg("name"))
      .def("stats", &Gateway::stats)
      .def("prometheus", &Gateway::prometheus)
      .def("config_dump", &Gateway::config_dump)
      .def("clock_advanced", &Gateway::clock_advanced)
      .def_property_readonly("listeners", &Gateway::listeners)
      .def_property_readonly("hook_errors", &Gateway::hook_errors);

  m.def("_live_gateways", [] { return live_gateways.load(); });
}
