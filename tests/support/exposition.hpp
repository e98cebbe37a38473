#pragma once
// Checks of the Prometheus text exposition format, for every test that
// reads metrics.

#include <string>
#include <vector>

namespace sluice::test {

std::vector<std::string> lines_of(const std::string& text);

// The value of the one sample whose line starts with `prefix` and contains
// every string of `parts`; fails the test when there is not exactly one.
std::string sample(const std::string& text, const std::string& prefix,
                   const std::vector<std::string>& parts);

// The text exposition format, strictly: comments are HELP or TYPE of a
// valid name, a family's TYPE comes before its samples, each sample is
// name{labels} value with quoted, escaped values, and histogram buckets
// are cumulative with +Inf equal to _count.
void check_exposition(const std::string& text);

}  // namespace sluice::test
