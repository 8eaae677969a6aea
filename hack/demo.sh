#!/usr/bin/env bash
# The README's first command: builds Berth, starts the local multi-host cluster with it (hack/up.sh),
# and shows an image stream following a registry tag. hack/down.sh stops it all.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { printf '\n==> %s\n' "$*"; }

step "Debian packages (hack/deps.sh)"
hack/deps.sh

step "building Berth (cargo build)"
cargo build --workspace --bins --locked
export BERTH_BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/debug"

step "local cluster (hack/up.sh)"
hack/up.sh
# shellcheck source=/dev/null
source "${BERTH_STATE:-$HOME/.berth/local}/env"

copy() { skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$BERTH_REGISTRY/berth/demo:$1" "docker://$BERTH_REGISTRY/berth/demo:$2"; }

step "the registry's berth/demo:live is version 1"
copy v1 live

step "applying the example stream, tag and Workload (manifests/examples/)"
kubectl apply -f manifests/examples/imagestream.yaml -f manifests/examples/imagestreamtag.yaml
if ! kubectl wait --for=condition=ImportSuccess --timeout=90s istag/demo.stable istag/demo.canary >/dev/null; then
	echo "demo: the tags did not import within 90 s; see kubectl describe istag and $BERTH_LOG_DIR/berth-controller.log" >&2
	kubectl get istag -o wide >&2 || true
	exit 1
fi
kubectl apply -f manifests/examples/workload.yaml
if ! kubectl wait --for=condition=Available --timeout=120s wl/demo >/dev/null ||
	! kubectl wait --for=condition=Ready --timeout=120s pod -l berth.dev/workload=demo >/dev/null; then
	echo "demo: the Workload's pods did not become Ready within 120 s; see kubectl describe wl/demo, kubectl get pods -o wide, and $BERTH_LOG_DIR" >&2
	kubectl get wl,pods -o wide >&2 || true
	exit 1
fi
kubectl get is,istag,wl,pods -o wide

step "asking each pod what it runs"
kubectl get pods -l berth.dev/workload=demo -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}' |
	while read -r pod node ip; do
		printf '%s on %s (%s): %s\n' "$pod" "$node" "$ip" "$(curl -s --max-time 3 "http://$ip:8080/" | tr -d '\n')"
	done

cat <<MSG

Berth runs: the stream demo follows $BERTH_REGISTRY/berth/demo:live, and the Workload demo
runs it on three hosts.

  source $BERTH_STATE/env                     # KUBECONFIG and friends for this shell
  kubectl get is,istag,wl,pods -o wide -w     # watch streams, tags, workloads and pods
  kubectl get events -w                       # Imported, TagUpdated, ImportFailed, ...
  skopeo copy --src-tls-verify=false --dest-tls-verify=false \\
    docker://$BERTH_REGISTRY/berth/demo:v2 docker://$BERTH_REGISTRY/berth/demo:live
                                              # push version 2: the registry tells Berth, demo:stable
                                              # moves, and the Workload rolls out one pod at a time
  hack/down.sh                                # stop everything
MSG
