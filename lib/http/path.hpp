#pragma once
// Request path normalisation (Istio meshConfig pathNormalization, Envoy's
// normalize_path / merge_slashes / path_with_escaped_slashes_action). Pure
// string code: routing, policies and the forwarded request all see its output.

#include <string>
#include <string_view>

#include "sluice/gateway.hpp"

namespace sluice::http {

// Normalises the path part of an origin-form `target` ("/a/b?q") in place;
// the query is kept byte for byte. Returns an empty string on success, else
// why the target must be answered 400 (an invalid or NUL escape, a path that
// does not start with '/'). With PathNormalization::none only the checks run.
//
// BASE: a raw '\' becomes '/' (as browsers and Envoy's canonicaliser do);
// %XX of an unreserved character (ALPHA DIGIT - . _ ~) is decoded and other
// escapes get uppercase hex; "." and ".." segments are removed (RFC 3986
// 5.2.4; ".." never climbs above the root). %2F and %5C stay encoded.
// MERGE_SLASHES: then runs of '/' become one.
// DECODE_AND_MERGE_SLASHES: %2F and %5C are decoded first (to '/' and '\',
// the latter then becoming '/'), then as MERGE_SLASHES.
std::string normalize_target(std::string& target, PathNormalization mode);

}  // namespace sluice::http
