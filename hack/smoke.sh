#!/usr/bin/env bash
# Smoke test of the local cluster: brings it up if it is not (and then tears
# it down again at the end), checks the API server, the CRDs, the registry and
# every host's containerd. Exit 0 when all checks pass; otherwise one line
# naming the failed check, and non-zero.
#
#   hack/smoke.sh            (a cluster it starts has the default 3 hosts)
#   BERTH_SMOKE_KEEP=1       leave a cluster it started running
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"
# shellcheck source=hack/lib/images.sh
source "$HACK/lib/images.sh"

SMOKE_NS=berth-smoke
checks=0
started_here=0

ok() {
	checks=$((checks + 1))
	echo "ok   $*"
}
fail() {
	echo "smoke FAILED: $*" >&2
	exit 1
}

finish() {
	local rc=$?
	if ((started_here)) && [[ "${BERTH_SMOKE_KEEP:-0}" != 1 ]]; then
		echo "smoke: stopping the cluster it started" >&2
		"$HACK/down.sh" >/dev/null 2>&1 || echo "smoke: hack/down.sh failed" >&2
	elif [[ -f "$ADMIN_KUBECONFIG" ]]; then
		# The cluster was there before: remove only what the smoke test created.
		kc delete namespace "$SMOKE_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	fi
	exit "$rc"
}
trap finish EXIT

require_root
if cluster_healthy; then
	echo "smoke: using the running cluster in $BERTH_STATE"
else
	echo "smoke: no running cluster, starting one (hack/up.sh)"
	started_here=1
	"$HACK/up.sh" || fail "hack/up.sh failed (logs in $LOG_DIR)"
fi
# shellcheck source=/dev/null
source "$ENV_FILE"

# --- API server -------------------------------------------------------------
version="$(kc get --raw /version 2>&1)" || fail "GET /version: $version"
git_version="$(jq -r .gitVersion <<<"$version")"
[[ "$git_version" == v1.* ]] || fail "GET /version answered no gitVersion: $version"
ok "API server $APISERVER_URL answers /version ($git_version)"
ready="$(kc get --raw '/readyz' 2>&1)" || fail "GET /readyz: $ready"
ok "API server ready (/readyz: $ready)"
kc get namespace default >/dev/null 2>&1 || fail "admin cannot read namespace default"
ok "admin (system:masters) reads the API"
# An unknown token gets 401 even on /version (no fallback to anonymous).
"$(kubectl_bin)" --kubeconfig "$CONTROLLER_KUBECONFIG" get --raw /version >/dev/null 2>&1 ||
	fail "the controller's token ($CONTROLLER_KUBECONFIG) is not accepted"
ok "controller identity authenticates"

# --- CRDs -------------------------------------------------------------------
n="$(apply_crds)" || fail "applying crds/*.yaml"
if ((n)); then ok "applied $n CRD file(s) from crds/"; else echo "skip no CRDs in crds/*.yaml yet"; fi

ISTAG_CRD=imagestreamtags.image.berth.dev
if kc get crd "$ISTAG_CRD" >/dev/null 2>&1; then
	# Only the fields the CRD requires today: stream, tag, from{kind,name}.
	required="$(kc get crd "$ISTAG_CRD" -o json |
		jq -r '.spec.versions[] | select(.name=="v1alpha1") | .schema.openAPIV3Schema.properties.spec.required // [] | sort | join(",")')"
	if [[ "$required" != "from,stream,tag" ]]; then
		echo "skip ImageStreamTag round trip: its spec now requires [$required], this test knows [from,stream,tag]"
	else
		ref="$BERTH_REGISTRY/berth/demo:v1"
		kc create namespace "$SMOKE_NS" >/dev/null 2>&1 || kc get namespace "$SMOKE_NS" >/dev/null 2>&1 ||
			fail "cannot create namespace $SMOKE_NS"
		out="$(kc -n "$SMOKE_NS" apply -f - 2>&1 <<-EOF
			apiVersion: image.berth.dev/v1alpha1
			kind: ImageStreamTag
			metadata:
			  name: demo.v1
			spec:
			  stream: demo
			  tag: v1
			  from:
			    kind: DockerImage
			    name: $ref
		EOF
		)" || fail "creating ImageStreamTag $SMOKE_NS/demo.v1: $out"
		got="$(kc -n "$SMOKE_NS" get istag demo.v1 -o jsonpath='{.spec.stream}:{.spec.tag} {.spec.from.name}' 2>&1)" ||
			fail "reading ImageStreamTag back: $got"
		[[ "$got" == "demo:v1 $ref" ]] || fail "ImageStreamTag read back as '$got', expected 'demo:v1 $ref'"
		ok "ImageStreamTag $SMOKE_NS/demo.v1 created and read back"
		if ((started_here)); then
			# kube-controller-manager's namespace controller must empty and remove it.
			kc delete namespace "$SMOKE_NS" --timeout=60s >/dev/null 2>&1 ||
				fail "namespace $SMOKE_NS not deleted within 60s (kube-controller-manager: $LOG_DIR/kube-controller-manager.log)"
			ok "namespace deletion (kube-controller-manager) removed $SMOKE_NS"
		fi
	fi
else
	echo "skip ImageStreamTag round trip: CRD $ISTAG_CRD not installed (no crds/imagestreamtags.yaml yet)"
fi

# --- registry ---------------------------------------------------------------
BERTH_REGISTRY="$BERTH_REGISTRY" "$HACK/images.sh" push-demo smoke >/dev/null 2>&1 ||
	fail "hack/images.sh push-demo smoke could not push to $BERTH_REGISTRY"
layout="$(build_demo smoke)"
want="$(jq -r '.manifests[0].digest' "$layout/index.json")"
got="$(curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$BERTH_REGISTRY/v2/berth/demo/manifests/smoke" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}')"
[[ "$got" == "$want" ]] || fail "registry answers digest '$got' for berth/demo:smoke, pushed $want"
ok "pushed berth/demo:smoke; registry answers its digest ${want:0:19}..."

# --- hosts ------------------------------------------------------------------
for node in $BERTH_NODES; do
	# shellcheck source=/dev/null
	(source "$(node_dir "$node")/env" && [[ -n "$NODE_IP" && -n "$CRI_ENDPOINT" ]]) || fail "$node: env file incomplete"
	v="$(ctr --address "$(node_sock "$node")" --timeout 5s version 2>&1)" ||
		fail "$node: containerd does not answer on $(node_sock "$node"): $v (log: $(node_dir "$node")/containerd.log)"
	server="$(awk '/^Server:/ {s=1} s && /Version:/ {print $2; exit}' <<<"$v")"
	in_netns "$(node_netns "$node")" curl -fsS --max-time 5 -o /dev/null "http://$BERTH_REGISTRY/v2/" ||
		fail "$node: registry $BERTH_REGISTRY not reachable from inside the host"
	in_netns "$(node_netns "$node")" curl -fsS --max-time 5 -o /dev/null --cacert "$PKI_DIR/ca.crt" "$APISERVER_URL/readyz" ||
		fail "$node: API server not reachable from inside the host"
	ok "$node ($(node_ip "$node")): containerd $server answers; registry and API server reachable from it"
done

echo "smoke: all $checks checks passed"
