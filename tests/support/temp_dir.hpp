#pragma once
// A fresh directory under the system's temporary directory, removed with
// everything in it when the test is done.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace sluice::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data())) path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Written whole under another name, then renamed: readers never see half a file.
  void write(const std::string& name, const std::string& text) const {
    std::filesystem::path tmp = path / (".tmp-" + name);
    { std::ofstream(tmp, std::ios::binary) << text; }
    std::filesystem::rename(tmp, path / name);
  }
};

// A whole file's bytes; empty when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace sluice::test
