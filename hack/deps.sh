#!/usr/bin/env bash
# Installs the Debian packages a local Berth cluster needs, only those missing.
# (The Kubernetes build toolchain is installed by hack/build-kube.sh when it builds.)
#   hack/deps.sh          install what is missing
#   hack/deps.sh --check  only report what is missing (one line per package), exit 1 if any
set -euo pipefail
# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# package -> why. Keep in the order a reader would look for them.
PACKAGES=(
	containerd                  # the CRI runtime, one instance per host namespace
	runc                        # OCI runtime containerd calls
	containernetworking-plugins # bridge, host-local, portmap, loopback in /usr/lib/cni
	docker-registry             # CNCF distribution 2.8: the local registry
	skopeo                      # pushes OCI layouts to the registry, no daemon
	umoci                       # builds OCI image layouts from a root filesystem
	busybox-static              # a whole userland in one static file, for images
	bind9-dnsutils              # dig, for the conformance suite's DNS querier images (hack/lib/e2e-images.sh)
	etcd-server                 # the API server's store
	iproute2                    # ip netns / veth / bridge
	iptables                    # portmap + bridge ipMasq in the CNI conflist
	openssl                     # the cluster CA and certificates
	curl                        # readiness probes
	procps                      # pgrep (finding a host's containerd shims)
	jq                          # reading JSON answers in scripts
	protobuf-compiler           # protoc, for the Rust build (CRI proto)
	ca-certificates             # curl/openssl defaults
	libfaketime                 # an agent whose clock runs ahead (BERTH_AGENT_CLOCK_OFFSET, e2e/tests/faults.rs)
)

check_only=0
[[ "${1:-}" == "--check" ]] && check_only=1

missing=()
for p in "${PACKAGES[@]}"; do
	pkg_installed "$p" || missing+=("$p")
done
# kubectl: any kubectl on PATH will do; otherwise Debian's (1.20, same as the server).
if ! command -v kubectl >/dev/null 2>&1; then
	missing+=(kubernetes-client)
fi

if ((${#missing[@]} == 0)); then
	exit 0
fi
if ((check_only)); then
	for p in "${missing[@]}"; do echo "missing Debian package: $p" >&2; done
	exit 1
fi
require_root
apt_install "${missing[@]}"

# Debian enables and starts containerd.service on install; the local cluster
# runs its own containerd per host and does not use it, and a registry
# service would hold port 5000. Stop the distro services, leave them installed.
for svc in containerd docker-registry etcd; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		log "stopping and disabling the distribution's $svc.service (the local cluster runs its own)"
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	fi
done
