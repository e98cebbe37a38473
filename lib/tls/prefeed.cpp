#include "tls/prefeed.hpp"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

namespace sluice::tls {

namespace {

// A read BIO that returns the bytes already taken off the socket first,
// then reads from the BIO it is pushed in front of (asio's BIO pair). This
// is how a terminated connection hands BoringSSL the ClientHello that
// read_client_hello consumed; asio's ssl::stream has no way to pre-feed it.
struct Prefix {
  std::vector<uint8_t> bytes;
  size_t pos = 0;
};

int prefix_read(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  auto* p = static_cast<Prefix*>(BIO_get_data(b));
  if (p && p->pos < p->bytes.size() && len > 0) {
    size_t n = std::min(static_cast<size_t>(len), p->bytes.size() - p->pos);
    std::memcpy(out, p->bytes.data() + p->pos, n);
    p->pos += n;
    if (p->pos == p->bytes.size()) std::vector<uint8_t>().swap(p->bytes);
    return static_cast<int>(n);
  }
  BIO* next = BIO_next(b);
  if (!next) return 0;
  int n = BIO_read(next, out, len);
  BIO_copy_next_retry(b);
  return n;
}

int prefix_write(BIO* b, const char* in, int len) {
  BIO* next = BIO_next(b);
  if (!next) return 0;
  BIO_clear_retry_flags(b);
  int n = BIO_write(next, in, len);
  BIO_copy_next_retry(b);
  return n;
}

long prefix_ctrl(BIO* b, int cmd, long num, void* ptr) {
  auto* p = static_cast<Prefix*>(BIO_get_data(b));
  BIO* next = BIO_next(b);
  long rest = next ? BIO_ctrl(next, cmd, num, ptr) : 0;
  if (cmd == BIO_CTRL_PENDING && p) rest += static_cast<long>(p->bytes.size() - p->pos);
  return rest;
}

int prefix_destroy(BIO* b) {
  delete static_cast<Prefix*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

const BIO_METHOD* prefix_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "sluice prefix");
    BIO_meth_set_read(m, prefix_read);
    BIO_meth_set_write(m, prefix_write);
    BIO_meth_set_ctrl(m, prefix_ctrl);
    BIO_meth_set_destroy(m, prefix_destroy);
    return m;
  }();
  return method;
}

}  // namespace

bool prefeed(asio::ssl::stream<asio::ip::tcp::socket>& stream, std::vector<uint8_t> bytes) {
  SSL* ssl = stream.native_handle();
  BIO* inner = SSL_get_rbio(ssl);
  BIO* prefix = BIO_new(prefix_method());
  if (!inner || !prefix) {
    if (prefix) BIO_free(prefix);
    return false;
  }
  BIO_set_data(prefix, new Prefix{std::move(bytes), 0});
  BIO_set_init(prefix, 1);
  BIO_up_ref(inner);        // the chain's reference; SSL_set0_rbio drops the SSL's
  BIO_push(prefix, inner);  // prefix -> asio's BIO pair end
  SSL_set0_rbio(ssl, prefix);
  return true;
}

}  // namespace sluice::tls
