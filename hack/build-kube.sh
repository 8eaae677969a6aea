#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 binaries Berth's local cluster and yardsticks use
# from Debian's `kubernetes` source package into $BERTH_CACHE/kubernetes-1.20.2/bin/:
# kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet
# (the peer node beside Berth's agent), e2e.test and ginkgo (the conformance suite,
# run in parallel) and agnhost (the suite's test image). One make, so the shared
# packages compile once; a cache missing only some binaries builds only those.
#
#   hack/build-kube.sh          build unless the cache holds a finished build
#   hack/build-kube.sh --force  rebuild
#   BERTH_KUBE_BIN_DIR=DIR      use the binaries in DIR, build nothing
#
# Prints the directory holding the binaries on stdout (last line).
set -euo pipefail
# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

KUBE_BIN_DIR="$KUBE_CACHE_DIR/bin"
# What the tree's Makefile builds (WHAT=...) and the binaries that come out of it.
KUBE_TARGETS=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kube-proxy cmd/kubelet
	test/e2e/e2e.test vendor/github.com/onsi/ginkgo/ginkgo test/images/agnhost)
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet e2e.test ginkgo agnhost)
# Written only after every binary is built and copied: its presence is what
# "the cache is usable" means (a killed build leaves no marker).
MARKER="$KUBE_CACHE_DIR/bin/.build-complete"
DEB_SRC_LIST=/etc/apt/sources.list.d/berth-bookworm-src.sources
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

force=0
[[ "${1:-}" == "--force" ]] && force=1

if [[ -n "${BERTH_KUBE_BIN_DIR:-}" ]]; then
	for b in "${KUBE_BINARIES[@]}"; do
		[[ -x "$BERTH_KUBE_BIN_DIR/$b" ]] || die "BERTH_KUBE_BIN_DIR=$BERTH_KUBE_BIN_DIR has no executable $b"
	done
	log "using Kubernetes binaries from BERTH_KUBE_BIN_DIR=$BERTH_KUBE_BIN_DIR (nothing built)"
	echo "$BERTH_KUBE_BIN_DIR"
	exit 0
fi

# One build per cache at a time: a second caller waits, then finds the marker.
mkdir -p "$KUBE_CACHE_DIR"
exec 8>"$KUBE_CACHE_DIR.lock"
if ! flock -n 8; then
	log "waiting for another Kubernetes build into $KUBE_CACHE_DIR"
	flock -w 1800 8 || die "another build still holds $KUBE_CACHE_DIR.lock after 30 minutes"
fi

cached() {
	[[ -f "$MARKER" ]] || return 1
	local b
	for b in "${KUBE_BINARIES[@]}"; do [[ -x "$KUBE_BIN_DIR/$b" ]] || return 1; done
}
if ((force == 0)) && cached; then
	log "Kubernetes $KUBE_VERSION binaries cached in $KUBE_BIN_DIR ($(<"$MARKER"))"
	echo "$KUBE_BIN_DIR"
	exit 0
fi

require_root
start=$SECONDS
# Only what is missing (all of it with --force or without the marker of a finished build).
build_targets=() build_binaries=()
for i in "${!KUBE_BINARIES[@]}"; do
	if ((force)) || [[ ! -f "$MARKER" || ! -x "$KUBE_BIN_DIR/${KUBE_BINARIES[i]}" ]]; then
		build_targets+=("${KUBE_TARGETS[i]}")
		build_binaries+=("${KUBE_BINARIES[i]}")
	fi
done

# --- toolchain and sources ----------------------------------------------------
# No Debian binary package ships kube-apiserver; the source package is the whole
# upstream tree with vendor/. Go 1.19 is the newest Debian Go this tree builds with.
apt_install golang-1.19-go rsync make dpkg-dev golang-github-modern-go-reflect2-dev
[[ -d "$REFLECT2_SRC" ]] || die "golang-github-modern-go-reflect2-dev installed but $REFLECT2_SRC is missing"

if [[ ! -f "$DEB_SRC_LIST" ]] && ! grep -rqsE '^(Types: *deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	log "adding a deb-src entry for bookworm ($DEB_SRC_LIST)"
	cat >"$DEB_SRC_LIST" <<-'EOF'
		# Added by berth hack/build-kube.sh: source packages, to build kube-apiserver.
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: bookworm
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	apt-get update -qq >/tmp/berth-apt.log 2>&1 || die "apt-get update failed after adding $DEB_SRC_LIST (see /tmp/berth-apt.log)"
fi

dl="$KUBE_CACHE_DIR/download"
mkdir -p "$dl"
if ! compgen -G "$dl/kubernetes_*.dsc" >/dev/null; then
	log "downloading Debian source package 'kubernetes' into $dl"
	(cd "$dl" && apt-get source -qq --download-only kubernetes >/tmp/berth-apt-source.log 2>&1) ||
		die "apt-get source --download-only kubernetes failed (see /tmp/berth-apt-source.log)"
fi
dsc="$(compgen -G "$dl/kubernetes_*.dsc" | head -n1)"

# dpkg-source -x also copies the orig tarball next to the tree: unpack into a
# scratch dir that goes away as a whole after the build.
work="$KUBE_CACHE_DIR/build"
src="$work/src"
rm -rf "$work" "$KUBE_CACHE_DIR"/kubernetes_*.orig.tar.*
mkdir -p "$work"
log "unpacking $(basename "$dsc")"
dpkg-source --no-check -x "$dsc" "$src" >/dev/null 2>&1 || die "dpkg-source -x $dsc failed"

# The vendored reflect2 1.0.1 reads Go runtime internals that changed in Go 1.18:
# the built apiserver SIGSEGVs on the first CRD request. Debian's 1.0.2 is fixed.
log "replacing vendored github.com/modern-go/reflect2 with Debian's 1.0.2"
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -a "$REFLECT2_SRC" "$src/vendor/github.com/modern-go/reflect2"
rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod" "$src/vendor/github.com/modern-go/reflect2/go.sum"

# --- build ----------------------------------------------------------------------
# The tree's own Makefile runs code generation first and sets up a GOPATH under
# _output (GOPATH mode); a plain `go build` does not work for this tree. There is
# no .git in a source package, so the version is given explicitly.
log "building ${build_binaries[*]} (about 10 minutes on 2 cores for all; log: $KUBE_CACHE_DIR/build.log)"
if ! (
	cd "$src"
	export PATH="/usr/lib/go-1.19/bin:$PATH" GOFLAGS='' GO111MODULE=off
	export KUBE_GIT_VERSION="v$KUBE_VERSION" KUBE_GIT_TREE_STATE=clean KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20
	make WHAT="${build_targets[*]}"
) >"$KUBE_CACHE_DIR/build.log" 2>&1; then
	tail -n 20 "$KUBE_CACHE_DIR/build.log" >&2
	die "Kubernetes build failed (log: $KUBE_CACHE_DIR/build.log)"
fi

mkdir -p "$KUBE_BIN_DIR"
rm -f "$MARKER"
for b in "${build_binaries[@]}"; do
	built="$(find "$src/_output" -type f -name "$b" -perm -u+x | head -n1)"
	[[ -n "$built" ]] || die "build finished but $b is not under $src/_output (log: $KUBE_CACHE_DIR/build.log)"
	install -m 0755 "$built" "$KUBE_BIN_DIR/$b"
done
elapsed=$((SECONDS - start))
echo "v$KUBE_VERSION from $(basename "$dsc"), built $(date -u +%FT%TZ) in ${elapsed}s" >"$MARKER"
# The unpacked tree and its _output (Go build cache included) are large and no
# longer needed; the downloaded source package stays for a rebuild.
rm -rf "$work"
log "built Kubernetes $KUBE_VERSION in ${elapsed}s -> $KUBE_BIN_DIR"
echo "$KUBE_BIN_DIR"
