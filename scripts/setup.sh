#!/usr/bin/env bash
# Installs the Debian packages relish needs to build and test, once: quiet and
# quick when everything is already there. Usage: scripts/setup.sh [--bench]
set -euo pipefail

packages=(
  # build
  gcc make cmake pkg-config clang-format
  liblua5.4-dev libcurl4-openssl-dev libgit2-dev libcjson-dev libyaml-dev libsqlite3-dev
  # tests: real servers and tools the suite starts on loopback
  git python3 openssl procps
  nghttp2-server # nghttpd: the HTTP/2 server of the http tests
  openssh-server openssh-client # sshd, ssh-keygen, ssh-agent: the git ssh tests
  prometheus prometheus-pushgateway # prometheus, promtool, pushgateway: the metrics tests
  chromium # headless Chromium: the HTML report tests (--dump-dom, --screenshot)
  # fuzzing (scripts/fuzz.sh): clang, and libFuzzer with clang's sanitizer runtimes
  clang libclang-rt-14-dev
)
if [ "${1:-}" = "--bench" ]; then packages+=(hyperfine lua5.4); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
