# Installs the Debian packages imaptap's scripts need, only when missing.
# Source it, then call: ensure_packages PKG...

missing_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
	done
}

ensure_packages() {
	local missing
	missing=$(missing_packages "$@")
	[ -z "$missing" ] && return 0
	echo "imaptap: installing missing packages: $(echo $missing)" >&2
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# What building and running imaptap needs.
BUILD_PACKAGES="build-essential cmake pkg-config libssl-dev libevent-dev libpcap-dev zlib1g-dev"
# Real peers for the tests and the demo.
PEER_PACKAGES="dovecot-imapd python3 procps openssl curl ca-certificates tshark"
# Fuzzing and sanitizer runtime.
FUZZ_PACKAGES="clang-14 libfuzzer-14-dev libclang-rt-14-dev"

ensure_python() {
	command -v python3 >/dev/null 2>&1 || ensure_packages python3
}
