#!/usr/bin/env bash
# Check Aloha's man pages: each must render with no warning at all from
# man(1) and groff (every warning category on), have NAME and SYNOPSIS
# sections, and stay plain ASCII. With lexgrog (man-db) installed, its
# reading of the NAME line is printed too.
#
#   packaging/man/check.sh [PAGE...]     default: every page in packaging/man
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ "$#" -gt 0 ]; then
  pages=("$@")
else
  pages=("$here"/*.[1-8])
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

failed=0
fail() {
  printf '%s: %s\n' "$1" "$2" >&2
  failed=1
}

for page in "${pages[@]}"; do
  [ -f "$page" ] || { fail "$page" "no such file"; continue; }
  name=$(basename "$page")

  # Render as man(1) would at 80 columns, all warnings on; anything on
  # stderr fails.
  if ! LC_ALL=C.UTF-8 MANWIDTH=80 \
    man --warnings=all -E UTF-8 -l "$page" >/dev/null 2>"$tmp"; then
    fail "$name" "man exited with an error"
  fi
  if [ -s "$tmp" ]; then
    fail "$name" "warnings from man/groff:"
    sed 's/^/    /' "$tmp" >&2
  fi

  # The same through groff directly: -ww also turns on the categories
  # man's --warnings=all leaves out (undefined macros, strings, registers).
  if ! groff -man -ww -z -Tutf8 "$page" 2>"$tmp"; then
    fail "$name" "groff exited with an error"
  fi
  if [ -s "$tmp" ]; then
    fail "$name" "warnings from groff -ww:"
    sed 's/^/    /' "$tmp" >&2
  fi

  for section in NAME SYNOPSIS; do
    grep -q "^\.SH \"\{0,1\}$section\"\{0,1\}\$" "$page" ||
      fail "$name" "no $section section"
  done

  if LC_ALL=C grep -n '[^[:print:][:space:]]' "$page" >"$tmp"; then
    fail "$name" "non-ASCII characters (use groff escapes such as \\(em):"
    sed 's/^/    /' "$tmp" >&2
  fi

  if command -v lexgrog >/dev/null; then
    if ! lexgrog "$page" >"$tmp" 2>&1; then
      fail "$name" "lexgrog cannot parse the NAME section:"
      sed 's/^/    /' "$tmp" >&2
    else
      cat "$tmp"
    fi
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "man page check FAILED" >&2
  exit 1
fi
echo "man pages OK: ${#pages[@]} checked"
