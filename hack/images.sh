#!/usr/bin/env bash
# Builds the test images without a daemon and pushes them to the local registry.
#
#   hack/images.sh                 push berth/pause:1, berth/demo:v1 and berth/demo:v2
#   hack/images.sh push-demo v3    build and push berth/demo:v3 (answers "berth-demo v3")
#   hack/images.sh push-pause      push berth/pause:1
#   hack/images.sh build-demo v3   build the OCI layout only, print its directory
#
# The registry is $BERTH_REGISTRY (default 10.213.0.1:5000, the one hack/up.sh starts).
set -euo pipefail
# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=hack/lib/images.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/images.sh"

REGISTRY="${BERTH_REGISTRY:-10.213.0.1:5000}"
need_cmd umoci umoci
need_cmd skopeo skopeo
[[ -x /bin/busybox ]] || die "missing /bin/busybox (Debian package 'busybox-static'): run hack/deps.sh"

valid_tag() { [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "not a valid image tag: '$1'"; }

cmd="${1:-all}"
case "$cmd" in
all)
	push_pause "$REGISTRY"
	push_demo "$REGISTRY" v1
	push_demo "$REGISTRY" v2
	log "pushed $REGISTRY/berth/pause:1, $REGISTRY/berth/demo:v1, $REGISTRY/berth/demo:v2"
	;;
push-demo)
	valid_tag "${2:?usage: hack/images.sh push-demo VERSION}"
	push_demo "$REGISTRY" "$2"
	log "pushed $REGISTRY/berth/demo:$2"
	;;
push-pause)
	push_pause "$REGISTRY"
	log "pushed $REGISTRY/berth/pause:1"
	;;
build-demo)
	valid_tag "${2:?usage: hack/images.sh build-demo VERSION}"
	build_demo "$2"
	;;
build-pause)
	build_pause
	;;
*)
	die "unknown command '$cmd' (all | push-demo VERSION | push-pause | build-demo VERSION | build-pause)"
	;;
esac
