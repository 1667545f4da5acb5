#!/usr/bin/env bash
# The programs some tests drive from outside: Debian's headless `chromium` (playground page tests) and
# `wrk` (the load benchmark's smoke test). Installed from Debian's packages when missing and possible;
# where they cannot be installed, those tests skip and say why.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then echo "test tools: chromium and wrk present"; exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null) \
    && echo "test tools: installed ${missing[*]}" \
    || echo "test tools: could not install ${missing[*]}; their tests will skip" >&2
else
  echo "test tools: ${missing[*]} missing (no root apt-get); their tests will skip" >&2
fi
