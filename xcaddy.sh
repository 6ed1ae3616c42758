#!/usr/bin/env bash
# Build or run a Caddy with the hookgate plugin from this checkout.
#
#   ./xcaddy.sh build [--output FILE]     writes ./caddy (or FILE)
#   ./xcaddy.sh run [caddy run args...]   builds ./caddy, then runs `./caddy run ARGS`
#   ./xcaddy.sh help
#
# Needs nothing but Go: xcaddy comes from go.mod's tool dependencies
# (`go tool xcaddy`), and the Caddy version is the one go.mod requires.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
	cat <<'EOF'
Usage:
  ./xcaddy.sh build [--output FILE]     build Caddy with hookgate into ./caddy (or FILE)
  ./xcaddy.sh run [caddy run args...]   build ./caddy, then exec `./caddy run ARGS`
                                        e.g. ./xcaddy.sh run --config examples/quickstart/Caddyfile
  ./xcaddy.sh help                      this text

Environment:
  XCADDY_GO_BUILD_FLAGS   go build flags (default: -ldflags='-w -s', which shares
                          the build cache with `go build` and `go test`)
EOF
}

# The Caddy version go.mod requires, so the binary matches what the tests use.
caddy_version() {
	local v
	v=$(awk '$1 == "github.com/caddyserver/caddy/v2" { print $2; exit }' go.mod)
	if [[ -z $v ]]; then
		echo "xcaddy.sh: cannot find github.com/caddyserver/caddy/v2 in go.mod" >&2
		exit 1
	fi
	echo "$v"
}

build() {
	local output=./caddy
	while (($#)); do
		case $1 in
		--output | -o)
			[[ $# -ge 2 ]] || { echo "xcaddy.sh: $1 needs a file name" >&2; exit 2; }
			output=$2
			shift 2
			;;
		--output=*)
			output=${1#--output=}
			shift
			;;
		*)
			echo "xcaddy.sh build: unknown argument: $1" >&2
			usage >&2
			exit 2
			;;
		esac
	done

	local version
	version=$(caddy_version)

	# Any proxy error (some proxies answer an unknown module path such as
	# ours with 400/403, not 404) falls through to "off" instead of failing;
	# our own module comes from this directory through the replacement.
	local first_proxy
	first_proxy=$(go env GOPROXY | cut -d, -f1)
	export GOPROXY="${first_proxy}|off"

	# xcaddy's defaults (-trimpath, extra tags) would compile all of Caddy a
	# second time beside the cache `go build`/`go test` already fill.
	export XCADDY_GO_BUILD_FLAGS="${XCADDY_GO_BUILD_FLAGS:--ldflags='-w -s'}"

	echo "xcaddy.sh: building Caddy ${version} with hookgate into ${output} (the first build downloads and compiles Caddy: a few minutes; later builds take seconds)" >&2
	go tool xcaddy build "$version" \
		--with "github.com/hookgate/hookgate=." \
		--output "$output"
}

cmd=${1:-help}
(($#)) && shift
case $cmd in
build)
	build "$@"
	;;
run)
	build
	exec ./caddy run "$@"
	;;
help | -h | --help)
	usage
	;;
*)
	echo "xcaddy.sh: unknown command: $cmd" >&2
	usage >&2
	exit 2
	;;
esac
