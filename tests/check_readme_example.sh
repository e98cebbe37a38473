#!/usr/bin/env bash
# The README's programmatic example (its first ```cpp block) must be exactly
# tests/consumer/main.cpp, which CI compiles and runs (package_test.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readme=$root/README.md
example=$root/tests/consumer/main.cpp

block=$(awk '/^```cpp$/ && !seen { inside = 1; seen = 1; next }
             inside && /^```$/ { inside = 0; next }
             inside { print }' "$readme")
if [[ -z "$block" ]]; then
  echo "FAIL: no \`\`\`cpp block in $readme" >&2
  exit 1
fi
if ! diff -u --label "tests/consumer/main.cpp" --label "README.md example" \
    "$example" <(printf '%s\n' "$block"); then
  echo "FAIL: README.md's example differs from tests/consumer/main.cpp (diff above)" >&2
  exit 1
fi
echo "PASS: README example is tests/consumer/main.cpp"
