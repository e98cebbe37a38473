// A one-listener, one-route gateway for benchmarks/run.sh: every request on
// 127.0.0.1:--port goes to the origin on 127.0.0.1:--origin-port. Built only
// from the public API, so it measures what a host program would get.
//
//   sluice_bench_server --port 8080 --origin-port 9080 [--workers 1]
//                       [--tls CERT.pem KEY.pem] [--origin-protocol http1|http2]
//
// The listener speaks HTTP/1.1 and h2c (prior knowledge), the library's
// default. --origin-protocol http2 speaks h2c to the origin (the gRPC rows).
// With --tls the listener terminates TLS (any SNI, library defaults: TLS 1.2
// minimum, 1.3 preferred, session tickets on) with the PEM files given.

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include <sluice/sluice.hpp>

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: sluice_bench_server --port N --origin-port N [--workers N]\n"
               "       [--address 127.0.0.1] [--origin-address 127.0.0.1]\n"
               "       [--tls CERT.pem KEY.pem] [--metrics on|off]\n"
               "       [--origin-protocol http1|http2]\n"
               "       [--access-log PATH | --access-log-json PATH]\n"
               "       [--otlp-endpoint URL] [--trace-sampling PERCENT]\n");
}

bool parse_port(const char* text, uint16_t& out) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 0 || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

bool read_file(const char* path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return !out.empty();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice;
  uint16_t port = 0;
  uint16_t origin_port = 0;
  unsigned workers = 1;
  std::string address = "127.0.0.1";
  std::string origin_address = "127.0.0.1";
  std::string tls_cert;
  std::string tls_key;
  bool metrics = true;
  UpstreamProtocol origin_protocol = UpstreamProtocol::http1;
  TelemetryConfig telemetry;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!value) {
      usage();
      return 2;
    }
    bool ok = true;
    if (arg == "--port") {
      ok = parse_port(value, port);
    } else if (arg == "--origin-port") {
      ok = parse_port(value, origin_port);
    } else if (arg == "--workers") {
      workers = static_cast<unsigned>(std::strtoul(value, nullptr, 10));
    } else if (arg == "--address") {
      address = value;
    } else if (arg == "--origin-address") {
      origin_address = value;
    } else if (arg == "--origin-protocol") {
      ok = std::string_view(value) == "http1" || std::string_view(value) == "http2";
      if (std::string_view(value) == "http2") origin_protocol = UpstreamProtocol::http2;
    } else if (arg == "--metrics") {
      metrics = std::string_view(value) != "off";
    } else if (arg == "--access-log") {
      telemetry.access_logs.push_back({.path = value});
    } else if (arg == "--access-log-json") {
      telemetry.access_logs.push_back({.path = value, .encoding = AccessLogConfig::Encoding::json});
    } else if (arg == "--otlp-endpoint") {
      telemetry.tracing.otlp_endpoint = value;
    } else if (arg == "--trace-sampling") {
      telemetry.tracing.sampling_percentage = std::strtod(value, nullptr);
    } else if (arg == "--tls") {
      // Two values: the certificate chain and the private key, PEM files.
      if (i + 2 >= argc || !read_file(value, tls_cert) || !read_file(argv[i + 2], tls_key)) {
        std::fprintf(stderr, "--tls: cannot read the certificate or key file\n");
        return 2;
      }
      ++i;
    } else {
      ok = false;
    }
    if (!ok) {
      usage();
      return 2;
    }
    ++i;
  }
  if (origin_port == 0) {
    usage();
    return 2;
  }

  GatewayConfig config;
  config.upstreams = {{.name = "origin",
                       .endpoints = {{.address = origin_address, .port = origin_port}},
                       .protocol = origin_protocol}};
  config.routers = {
      {.name = "main",
       .virtual_hosts = {{.name = "all",
                          .domains = {"*"},
                          .routes = {{.name = "all", .destinations = {{.upstream = "origin"}}}}}}}};
  config.listeners = {{.name = "http", .address = address, .port = port, .router = "main"}};
  config.telemetry = telemetry;
  if (!tls_cert.empty()) {
    config.listeners[0].tls_servers = {
        {.sni_hosts = {"*"}, .certificate_chain = tls_cert, .private_key = tls_key}};
  }

  // SIGINT/SIGTERM are blocked in every thread (workers inherit the mask) and
  // taken by one waiting thread, which calls stop(): no polling, no work in a
  // signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  GatewayOptions options{.workers = workers};
  options.telemetry.metrics = metrics;
  Gateway gateway(std::move(options));
  if (Status applied = gateway.apply(config); !applied) {
    std::fprintf(stderr, "%s\n", applied.error().to_string().c_str());
    return 1;
  }
  std::printf("listening on %s:%u\n", address.c_str(), gateway.port("http"));
  std::fflush(stdout);

  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    gateway.stop();
  });
  gateway.run();
  stopper.join();
  return 0;
}
