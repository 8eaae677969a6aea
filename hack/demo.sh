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

step "applying the example stream and tag (manifests/examples/)"
kubectl apply -f manifests/examples/imagestream.yaml -f manifests/examples/imagestreamtag.yaml
if ! kubectl wait --for=condition=ImportSuccess --timeout=90s istag/demo.stable istag/demo.canary >/dev/null; then
	echo "demo: the tags did not import within 90 s; see kubectl describe istag and $BERTH_LOG_DIR/berth-controller.log" >&2
	kubectl get istag -o wide >&2 || true
	exit 1
fi
kubectl get is,istag -o wide

cat <<MSG

Berth runs: the stream demo follows $BERTH_REGISTRY/berth/demo:live.

  source $BERTH_STATE/env                     # KUBECONFIG and friends for this shell
  kubectl get is,istag,wl,pods -o wide -w     # watch streams, tags, workloads and pods
  kubectl get events -w                       # Imported, TagUpdated, ImportFailed, ...
  skopeo copy --src-tls-verify=false --dest-tls-verify=false \\
    docker://$BERTH_REGISTRY/berth/demo:v2 docker://$BERTH_REGISTRY/berth/demo:live
                                              # push version 2: the registry tells Berth, demo:stable moves
  hack/down.sh                                # stop everything

Workload rollouts onto the hosts are not implemented yet (see the README).
MSG
