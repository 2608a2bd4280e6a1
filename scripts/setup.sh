#!/usr/bin/env bash
# Installs what hookmeter needs on Debian 12 (as root) and its npm packages. Quick when done:
# packages already installed and an unchanged package-lock.json are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# runtime: libbpf1; build and tests: clang-19, llvm-19, libbpf-dev, bpftool, third-party eBPF
# tools to measure (libbpf-tools, bpftrace), util-linux (setpriv), gcc for the layout check
packages=(libbpf1 libbpf-dev clang-19 llvm-19 bpftool libbpf-tools bpftrace util-linux gcc libc6-dev
	ca-certificates)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install
stamp=node_modules/.hookmeter-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/.bin/bun ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	echo "setup: npm ci" >&2
	npm ci --no-audit --no-fund --loglevel=error >&2
	echo "$want" >"$stamp"
fi
