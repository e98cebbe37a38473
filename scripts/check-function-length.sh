#!/usr/bin/env bash
# Fails when a function body under lib/ is longer than the limit (issue 11,
# "Done when": no function in lib/ is longer than about 120 lines).
#
# Usage: scripts/check-function-length.sh [source-dir] [allowlist]
#   source-dir  default: this repository
#   allowlist   default: scripts/function-length-allowlist.txt in source-dir
#
# A function's length runs from the line of its body's opening brace to the
# line of its closing brace. Free and member functions, constructors,
# operators, coroutines and lambdas at namespace scope count; a lambda or a
# local class inside a function counts toward that function. Braces inside
# string, raw string and character literals, comments and preprocessor lines
# are not braces.
#
# The allowlist holds `path:function` lines (path from source-dir, function
# as printed below, e.g. `lib/proxy/session.cpp:Session::proxy`; `#` starts
# a comment): long functions that exist today and are being split. They are
# printed as warnings. Any other long function fails the check, and an entry
# that no longer names a long function is reported so it can be deleted.
#
# SLUICE_FUNCTION_LIMIT overrides the limit (120), for the script's own test.

set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
allow=${2:-"$root/scripts/function-length-allowlist.txt"}
limit=${SLUICE_FUNCTION_LIMIT:-120}

exec python3 - "$root" "$allow" "$limit" <<'PY'
import os
import re
import sys

root, allow_path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Encoding prefixes a string or character literal may carry.
LITERAL_PREFIXES = ("u8R", "uR", "UR", "LR", "R", "u8", "u", "U", "L")


def tokenize(text):
    """(kind, value, line) for identifiers, numbers and punctuation.

    Comments, literals and preprocessor lines produce nothing but count
    their newlines. `::` and `->` are one token; everything else one char.
    """
    out = []
    i, n, line = 0, len(text), 1
    at_line_start = True  # only white space so far on this line
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            at_line_start = True
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == "\\" and i + 1 < n and text[i + 1] == "\n":  # line splice
            line += 1
            i += 2
            continue
        if c == "#" and at_line_start:
            # A directive's braces (macro bodies) are not code.
            i, line = skip_line(text, i, line, directive=True)
            continue
        at_line_start = False
        if text.startswith("//", i):
            i, line = skip_line(text, i, line, directive=False)
            continue
        if text.startswith("/*", i):
            i, line = skip_block_comment(text, i, line)
            continue
        m = IDENT.match(text, i)
        if m:
            word = m.group(0)
            j = m.end()
            if word in LITERAL_PREFIXES and j < n and text[j] in "\"'":
                raw = word.endswith("R") and text[j] == '"'
                i, line = skip_literal(text, j, line, raw)
                out.append(("lit", word, line))
                continue
            out.append(("id", word, line))
            i = j
            continue
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            # pp-number: digit separators (1'000) and exponents included.
            j = i + 1
            while j < n:
                d = text[j]
                if d in "eEpP" and j + 1 < n and text[j + 1] in "+-":
                    j += 2
                elif d.isalnum() or d in "_.":
                    j += 1
                elif d == "'" and j + 1 < n and text[j + 1].isalnum():
                    j += 1
                else:
                    break
            out.append(("num", text[i:j], line))
            i = j
            continue
        if c in "\"'":
            i, line = skip_literal(text, i, line, False)
            out.append(("lit", c, line))
            continue
        if text.startswith("::", i) or text.startswith("->", i):
            out.append(("op", text[i : i + 2], line))
            i += 2
            continue
        out.append(("op", c, line))
        i += 1
    return out


def skip_block_comment(text, i, line):
    """Index just past the comment opening at text[i], and the line there."""
    end = text.find("*/", i + 2)
    end = len(text) if end < 0 else end + 2
    return end, line + text.count("\n", i, end)


def skip_line(text, i, line, directive):
    """Index of the newline ending the logical line at i (spliced lines
    included), and the line there. In a directive, a block comment may run
    on past a newline."""
    n = len(text)
    while i < n and text[i] != "\n":
        if directive and text.startswith("/*", i):
            i, line = skip_block_comment(text, i, line)
        elif text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
            i, line = i + 2, line + 1
        else:
            i += 1
    return i, line


def skip_literal(text, i, line, raw):
    """Index just past the literal opening at text[i], and the line there."""
    quote = text[i]
    n = len(text)
    if raw:
        open_paren = text.find("(", i + 1)
        if open_paren < 0:
            return n, line
        delim = ")" + text[i + 1 : open_paren] + '"'
        end = text.find(delim, open_paren + 1)
        end = n if end < 0 else end + len(delim)
        return end, line + text.count("\n", i, end)
    j = i + 1
    while j < n and text[j] != quote:
        if text[j] == "\\":
            if j + 1 < n and text[j + 1] == "\n":
                line += 1
            j += 2
            continue
        if text[j] == "\n":  # unterminated: end it before the newline
            return j, line
        j += 1
    return min(j + 1, n), line


DECL_KEYWORDS = {"class", "struct", "union", "enum", "namespace"}
ACCESS = {"public", "private", "protected"}


class Statement:
    """The tokens of one declaration at namespace or class scope."""

    def __init__(self):
        self.tokens = []
        self.paren = 0
        self.angle = 0
        self.params_seen = False  # a '(' at depth 0 opened
        self.params_closed = False
        self.init_list = False  # ':' after the parameters: ctor initializers
        self.assign_first = False  # '=' before any parameter list

    def head(self):
        """Tokens after any leading `template <...>`."""
        toks, k = self.tokens, 0
        while k < len(toks) and toks[k][1] == "template":
            k += 1
            depth = 0
            while k < len(toks):
                v = toks[k][1]
                k += 1
                if v == "<":
                    depth += 1
                elif v == ">":
                    depth -= 1
                    if depth == 0:
                        break
        return toks[k:]

    def is_type(self):
        head = self.head()
        return any(t[1] in DECL_KEYWORDS for t in head[:1]) or (
            len(head) >= 2 and head[0][1] in ("typedef", "extern", "friend")
            and head[1][1] in DECL_KEYWORDS
        ) or (head[:1] and head[0][1] == "extern" and len(head) == 2 and head[1][0] == "lit")

    def function_name(self):
        """The declarator's name: `a::b::f`, `operator==`, or a lambda's variable."""
        toks = self.head()
        if self.assign_first:
            eq = next(k for k, t in enumerate(toks) if t[1] == "=")
            before = [t for t in toks[:eq] if t[0] == "id"]
            return before[-1][1] if before else "(lambda)"
        depth = 0
        for k, t in enumerate(toks):
            if t[1] == "<":
                depth += 1
            elif t[1] == ">":
                depth = max(depth - 1, 0)
            elif t[1] == "operator":
                name = "operator"
                j = k + 1
                if j + 1 < len(toks) and toks[j][1] == "(" and toks[j + 1][1] == ")":
                    return qualify(toks, k, "operator()")
                while j < len(toks) and toks[j][1] != "(":
                    name += (" " if toks[j][0] == "id" else "") + toks[j][1]
                    j += 1
                return qualify(toks, k, name)
            elif t[1] == "(" and depth == 0:
                return qualify(toks, k - 1, toks[k - 1][1] if k else "?")
        return "?"


def qualify(toks, k, name):
    """`name` with the `a::b::` written before token k."""
    j = k
    if j >= 1 and toks[j - 1][1] == "~":
        name = "~" + name
        j -= 1
    while j >= 2 and toks[j - 1][1] == "::":
        j -= 1
        if toks[j - 1][1] == ">":  # `Session<Stream>::`: the template's name
            depth = 0
            while j >= 1:
                j -= 1
                depth += {">": 1, "<": -1}.get(toks[j][1], 0)
                if depth == 0:
                    break
        if j < 1 or toks[j - 1][0] != "id":
            break
        name = toks[j - 1][1] + "::" + name
        j -= 1
    return name


def long_functions(tokens, limit):
    """(name, first line, length) of each function body over `limit` lines."""
    found = []
    # Scope stack: ("ns"|"class"|"other", class name or None).
    scopes = []
    stmt = Statement()
    k = 0
    n = len(tokens)
    while k < n:
        kind, v, line = tokens[k]
        if v == "{":
            prev = stmt.tokens[-1] if stmt.tokens else None
            if stmt.paren > 0 or (stmt.init_list and prev and (prev[0] == "id" or prev[1] == ">")):
                # A brace inside parentheses or a member's brace initializer:
                # part of the declaration.
                k = skip_braces(tokens, k)
                stmt.tokens.append(("op", "{}", line))
                continue
            if stmt.is_type() or (not stmt.params_seen and not stmt.assign_first and not stmt.tokens):
                head = stmt.head()
                is_class = head and head[0][1] in ("class", "struct", "union")
                name = None
                if is_class:
                    ids = [t[1] for t in head[1:] if t[0] == "id" and t[1] not in ("final", "alignas")]
                    # `struct A : B {`: the name is the last id before ':'.
                    upto = [t for t in head[1:]]
                    cut = next((i for i, t in enumerate(upto) if t[1] == ":"), len(upto))
                    ids = [t[1] for t in upto[:cut] if t[0] == "id" and t[1] != "final"]
                    name = ids[-1] if ids else None
                kind_ = "class" if is_class else ("ns" if head and head[0][1] in ("namespace", "extern") else "other")
                scopes.append((kind_, name))
                stmt = Statement()
                k += 1
                continue
            is_function = has_lambda(stmt) if stmt.assign_first else stmt.params_seen
            if is_function:
                end = skip_braces(tokens, k)
                last = tokens[end - 1][2]
                length = last - line + 1
                if length > limit:
                    prefix = "::".join(s[1] for s in scopes if s[0] == "class" and s[1])
                    name = stmt.function_name()
                    if prefix and "::" not in name:
                        name = prefix + "::" + name
                    found.append((name, line, length))
                k = end
                stmt.tokens.append(("op", "{}", line))
                if stmt.assign_first:
                    continue  # `auto f = [] {...};` ends at its ';'
                stmt = Statement()
                continue
            # A variable's brace initializer: skip it, the ';' follows.
            k = skip_braces(tokens, k)
            stmt.tokens.append(("op", "{}", line))
            continue
        if v == "}":
            if scopes:
                scopes.pop()
            stmt = Statement()
            k += 1
            continue
        if v == ";" and stmt.paren == 0:
            stmt = Statement()
            k += 1
            continue
        if v in ACCESS and k + 1 < n and tokens[k + 1][1] == ":" and not stmt.tokens:
            k += 2
            continue
        stmt.tokens.append(tokens[k])
        if v == "operator":
            # Its symbol is the name, not parentheses or template brackets.
            if k + 2 < n and tokens[k + 1][1] == "(" and tokens[k + 2][1] == ")":
                stmt.tokens.extend(tokens[k + 1 : k + 3])
                k += 3
                continue
            k += 1
            while k < n and tokens[k][1] not in ("(", ";", "{"):
                stmt.tokens.append(tokens[k])
                k += 1
            continue
        if v == "(":
            if stmt.paren == 0 and stmt.angle == 0 and not stmt.params_seen:
                stmt.params_seen = True
            stmt.paren += 1
        elif v == ")":
            stmt.paren = max(stmt.paren - 1, 0)
            if stmt.paren == 0 and stmt.params_seen:
                stmt.params_closed = True
        elif stmt.paren == 0:
            prev = stmt.tokens[-2] if len(stmt.tokens) >= 2 else None
            if v == "<" and prev and (prev[0] == "id" or prev[1] == "template"):
                stmt.angle += 1
            elif v == ">" and stmt.angle > 0:
                stmt.angle -= 1
            elif v == "=" and stmt.angle == 0 and not stmt.params_seen:
                stmt.assign_first = True
            elif v == ":" and stmt.params_closed and stmt.angle == 0:
                stmt.init_list = True
        k += 1
    return found


def has_lambda(stmt):
    """`... = [captures](params) ... {`: a lambda bound at namespace or class scope."""
    toks = stmt.tokens
    eq = next(k for k, t in enumerate(toks) if t[1] == "=")
    return eq + 1 < len(toks) and toks[eq + 1][1] == "["


def skip_braces(tokens, k):
    """Index just past the '}' matching the '{' at k."""
    depth = 0
    n = len(tokens)
    while k < n:
        v = tokens[k][1]
        if v == "{":
            depth += 1
        elif v == "}":
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    return n


def main():
    allowed = {}
    if os.path.exists(allow_path):
        with open(allow_path, encoding="utf-8") as f:
            for raw in f:
                entry = raw.split("#", 1)[0].strip()
                if entry:
                    allowed[entry] = False
    else:
        print(f"note: no allowlist at {allow_path}")

    errors = warnings = 0
    lib = os.path.join(root, "lib")
    for dirpath, dirnames, filenames in os.walk(lib):
        dirnames.sort()
        for fname in sorted(filenames):
            if not fname.endswith((".cpp", ".cc", ".hpp", ".h")):
                continue
            path = os.path.join(dirpath, fname)
            rel = os.path.relpath(path, root)
            with open(path, encoding="utf-8", errors="replace") as f:
                tokens = tokenize(f.read())
            for name, line, length in long_functions(tokens, limit):
                key = f"{rel}:{name}"
                if key in allowed:
                    allowed[key] = True
                    warnings += 1
                    print(f"warning: {rel}:{line}: {name} is {length} lines (limit {limit}); "
                          "allowlisted, being split")
                else:
                    errors += 1
                    print(f"error: {rel}:{line}: {name} is {length} lines (limit {limit}); "
                          "split it along the lines of its work")
    for entry, seen in allowed.items():
        if not seen:
            print(f"note: allowlist entry \"{entry}\" no longer names a function over {limit} "
                  f"lines: delete it from {os.path.relpath(allow_path, root)}")
    if errors:
        print(f"check-function-length: {errors} function(s) over {limit} lines "
              f"({warnings} allowlisted)")
        return 1
    print(f"check-function-length: ok ({warnings} allowlisted function(s) left)")
    return 0


sys.exit(main())
PY
