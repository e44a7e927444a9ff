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
PEER_PACKAGES="dovecot-imapd python3 procps openssl curl ca-certificates tshark tcpdump isync groff-base mmdebstrap jq cyrus-common sasl2-bin dma haproxy iproute2 iptables nftables prometheus"
# Fuzzing and sanitizer runtime.
FUZZ_PACKAGES="clang-14 libfuzzer-14-dev libclang-rt-14-dev"

ensure_python() {
	command -v python3 >/dev/null 2>&1 || ensure_packages python3
}

# Node and npm for the Node IMAP clients (imapflow) the tests drive.
ensure_node() {
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		ensure_packages nodejs npm
	fi
}

# The pinned Node clients of tests/node, installed with npm ci into DIR.
ensure_node_clients() {
	local dir=$1
	mkdir -p "$dir"
	cp tests/node/package.json tests/node/package-lock.json tests/node/*.mjs "$dir"/
	if [ ! -f "$dir/node_modules/imapflow/package.json" ] ||
		! cmp -s tests/node/package-lock.json "$dir/node_modules/.package-lock.json.imaptap"; then
		echo "imaptap: installing the Node test clients (npm ci) in $dir" >&2
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
		cp tests/node/package-lock.json "$dir/node_modules/.package-lock.json.imaptap"
	fi
}
