#include "support/h2_client.hpp"

#include <nghttp2/nghttp2.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <set>

namespace sluice::test::h2 {

namespace {

std::string be24(uint32_t v) {
  return {static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An HPACK integer with an n-bit prefix (RFC 7541 §5.1).
std::string hpack_int(uint8_t first_bits, int prefix, uint32_t v) {
  std::string out;
  uint32_t max = (1u << prefix) - 1;
  if (v < max) {
    out += static_cast<char>(first_bits | v);
    return out;
  }
  out += static_cast<char>(first_bits | max);
  v -= max;
  while (v >= 128) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
  return out;
}

std::string hpack_string(std::string_view s) {
  return hpack_int(0, 7, s.size()) + std::string(s);
}

}  // namespace

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string out = be24(static_cast<uint32_t>(payload.size()));
  out += static_cast<char>(type);
  out += static_cast<char>(flags);
  out += static_cast<char>((stream >> 24) & 0x7f);
  out += static_cast<char>(stream >> 16);
  out += static_cast<char>(stream >> 8);
  out += static_cast<char>(stream);
  out += payload;
  return out;
}

std::string literal(std::string_view name, std::string_view value) {
  return std::string(1, '\0') + hpack_string(name) + hpack_string(value);
}

std::string literal_indexed(std::string_view name, std::string_view value) {
  return std::string(1, '\x40') + hpack_string(name) + hpack_string(value);
}

std::string indexed(uint32_t index) {
  return hpack_int(0x80, 7, index);
}

std::string request_block(std::string_view method, std::string_view path,
                          std::string_view authority,
                          const std::vector<std::pair<std::string, std::string>>& extra) {
  std::string out = literal(":method", method) + literal(":scheme", "http") +
                    literal(":path", path) + literal(":authority", authority);
  for (const auto& [n, v] : extra) out += literal(n, v);
  return out;
}

std::string client_start() {
  return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + frame(kSettings, 0, 0, "");
}

std::vector<Frame> frames_of(std::string_view bytes) {
  std::vector<Frame> out;
  while (bytes.size() >= 9) {
    auto u = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
    uint32_t len = (u(0) << 16) | (u(1) << 8) | u(2);
    if (bytes.size() < 9 + len) break;
    uint32_t stream = ((u(5) & 0x7f) << 24) | (u(6) << 16) | (u(7) << 8) | u(8);
    out.push_back(Frame{u(3), u(4), stream, std::string(bytes.substr(9, len))});
    bytes.remove_prefix(9 + len);
  }
  return out;
}

namespace {

uint32_t be32(std::string_view b, size_t at) {
  auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(b[at + i])); };
  return (u(0) << 24) | (u(1) << 16) | (u(2) << 8) | u(3);
}

}  // namespace

std::optional<uint32_t> goaway_code(std::string_view bytes) {
  for (const auto& f : frames_of(bytes))
    if (f.type == kGoaway && f.payload.size() >= 8) return be32(f.payload, 4);
  return std::nullopt;
}

std::optional<uint32_t> rst_code(std::string_view bytes, uint32_t stream) {
  for (const auto& f : frames_of(bytes))
    if (f.type == kRstStream && f.stream == stream && f.payload.size() == 4)
      return be32(f.payload, 0);
  return std::nullopt;
}

struct Client::Impl {
  Client* owner = nullptr;
  nghttp2_session* session = nullptr;
  std::map<int32_t, std::string> bodies_out;  // request bodies being sent
  std::set<int32_t> streaming;                // open(): more body may follow

  Response& at(int32_t id) { return owner->responses_[id]; }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    std::string n(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    Response& r = self.at(frame->hd.stream_id);
    if (n == ":status") {
      int status = std::stoi(v);
      if (status >= 200) r.status = status;
    } else if (frame->headers.cat == NGHTTP2_HCAT_HEADERS && r.status != 0) {
      r.trailers.add(std::move(n), std::move(v));
    } else if (r.status >= 200) {  // an interim (1xx) head's fields are dropped
      r.headers.add(std::move(n), std::move(v));
    }
    return 0;
  }

  static int on_data(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                     void* ud) {
    static_cast<Impl*>(ud)->at(id).body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    if (frame->hd.type == NGHTTP2_GOAWAY) self.owner->goaway_ = frame->goaway.error_code;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
      self.owner->settings_received_ = true;
    if (frame->hd.type == NGHTTP2_RST_STREAM)
      self.at(frame->hd.stream_id).reset = frame->rst_stream.error_code;
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
      self.at(frame->hd.stream_id).done = true;
    return 0;
  }

  static ssize_t read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    std::string& b = self.bodies_out[id];
    if (b.empty() && self.streaming.count(id)) return NGHTTP2_ERR_DEFERRED;
    size_t n = std::min(length, b.size());
    std::memcpy(buf, b.data(), n);
    b.erase(0, n);
    if (b.empty() && !self.streaming.count(id)) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

Client::Client() : impl_(std::make_unique<Impl>()) {
  impl_->owner = this;
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::on_frame_recv);
  nghttp2_session_client_new(&impl_->session, cbs, impl_.get());
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(impl_->session, NGHTTP2_FLAG_NONE, nullptr, 0);
}

Client::~Client() {
  nghttp2_session_del(impl_->session);
}

int32_t Client::request(std::string_view method, std::string_view path, std::string_view authority,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        std::optional<std::string> body) {
  std::vector<std::pair<std::string, std::string>> all = {{":method", std::string(method)},
                                                          {":scheme", "http"},
                                                          {":path", std::string(path)},
                                                          {":authority", std::string(authority)}};
  // A plain CONNECT has neither :scheme nor :path (RFC 9113 §8.5).
  if (method == "CONNECT" && path.empty()) all.erase(all.begin() + 1, all.begin() + 3);
  all.insert(all.end(), headers.begin(), headers.end());
  std::vector<nghttp2_nv> nva;
  for (auto& [n, v] : all)
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(n.data()),
                             reinterpret_cast<uint8_t*>(v.data()), n.size(), v.size(),
                             NGHTTP2_NV_FLAG_NONE});
  nghttp2_data_provider provider{};
  provider.read_callback = &Impl::read_body;
  int32_t id = nghttp2_submit_request(impl_->session, nullptr, nva.data(), nva.size(),
                                      body ? &provider : nullptr, nullptr);
  if (id > 0 && body) impl_->bodies_out[id] = std::move(*body);
  return id;
}

int32_t Client::open(std::string_view method, std::string_view path, std::string_view authority,
                     const std::vector<std::pair<std::string, std::string>>& headers) {
  int32_t id = request(method, path, authority, headers, std::string());
  if (id > 0) impl_->streaming.insert(id);
  return id;
}

void Client::send(int32_t stream, std::string_view bytes, bool end) {
  impl_->bodies_out[stream].append(bytes);
  if (end) impl_->streaming.erase(stream);
  nghttp2_session_resume_data(impl_->session, stream);
}

uint32_t Client::server_setting(int32_t id) const {
  return nghttp2_session_get_remote_settings(impl_->session, static_cast<nghttp2_settings_id>(id));
}

std::string Client::take_output() {
  std::string out;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(impl_->session, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  return out;
}

bool Client::feed(std::string_view bytes) {
  return nghttp2_session_mem_recv(impl_->session, reinterpret_cast<const uint8_t*>(bytes.data()),
                                  bytes.size()) >= 0;
}

Socket::Socket(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

bool Socket::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Socket::read_some(int timeout_ms) {
  if (fd_ < 0 || closed_) return {};
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return {};
  char buf[65536];
  ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    closed_ = true;
    return {};
  }
  return std::string(buf, static_cast<size_t>(n));
}

std::string Socket::read_until_close(int timeout_ms) {
  std::string all;
  while (!closed_) {
    std::string got = read_some(timeout_ms);
    if (got.empty() && !closed_) break;
    all += got;
  }
  return all;
}

bool Socket::exchange(Client& client, const std::function<bool()>& done, int timeout_ms) {
  for (;;) {
    std::string out = client.take_output();
    if (!out.empty() && !send(out)) return false;
    if (done()) return true;
    std::string in = read_some(timeout_ms);
    if (in.empty()) return done();
    if (!client.feed(in)) return false;
  }
}

const Response& Peer::response(int32_t id) const {
  static const Response none;
  auto it = client.responses().find(id);
  return it == client.responses().end() ? none : it->second;
}

Peer::Peer(uint16_t port) : sock(port) {
  if (sock.connected()) sock.exchange(client, [&] { return client.settings_received(); });
}

const Response& Peer::head_of(int32_t id) {
  sock.exchange(client, [&] {
    auto it = client.responses().find(id);
    return it != client.responses().end() &&
           (it->second.status != 0 || it->second.done || it->second.reset);
  });
  return response(id);
}

const Response& Peer::body_of(int32_t id, size_t n) {
  sock.exchange(client, [&] {
    auto it = client.responses().find(id);
    return it != client.responses().end() &&
           (it->second.body.size() >= n || it->second.done || it->second.reset);
  });
  return response(id);
}

}  // namespace sluice::test::h2
