# shellcheck shell=bash
# shellcheck disable=SC2034 # constants used by the scripts that source this file
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the registry: how each is
# started, how its health is asked, where it logs. All run in the root namespace.

# Controllers of kube-controller-manager that the local cluster runs: its default
# set (deployment, replicaset, statefulset, daemonset, job, cronjob, endpoint,
# endpointslice, garbage collector, namespace, service account, node lifecycle, ...),
# as a cluster runs it. Override with BERTH_KCM_CONTROLLERS.
KCM_CONTROLLERS="${BERTH_KCM_CONTROLLERS:-*}"

# Components in start order. status/down iterate over this.
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler registry)

component_log() { echo "$LOG_DIR/$1.log"; }

etcd_start() {
	start_bg etcd "$(component_log etcd)" etcd --name berth \
		--data-dir "$BERTH_STATE/etcd" \
		--listen-client-urls "$ETCD_CLIENT_URL" --advertise-client-urls "$ETCD_CLIENT_URL" \
		--listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
		--initial-cluster "berth=$ETCD_PEER_URL" --initial-cluster-state new \
		--log-level warn --logger zap
}
etcd_healthy() { curl -fsS --max-time 2 "$ETCD_CLIENT_URL/health" | grep -q '"health":"true"'; }

# Extra flags, split on spaces: BERTH_APISERVER_EXTRA_ARGS, BERTH_KCM_EXTRA_ARGS
# (e.g. BERTH_KCM_EXTRA_ARGS="--node-monitor-grace-period=20s").
extra_args() { read -ra _extra <<<"${!1:-}"; }

# apiserver_audit_policy: what the API server's audit log (logs/audit.log) keeps: the writes
# of Berth's controller (user berth-controller), at Metadata level (who, what, when, which
# user agent; never a body). The controller names its replica in its user agent, so the
# log tells which replica wrote (e2e/tests/fencing.rs reads it).
apiserver_audit_policy() {
	mkdir -p "$BERTH_STATE/apiserver"
	cat >"$BERTH_STATE/apiserver/audit-policy.yaml" <<-EOF
		apiVersion: audit.k8s.io/v1
		kind: Policy
		omitStages: [RequestReceived]
		rules:
		- level: Metadata
		  users: [berth-controller]
		  verbs: [create, update, patch, delete, deletecollection]
		- level: None
	EOF
	echo "$BERTH_STATE/apiserver/audit-policy.yaml"
}

# apiserver_start KUBE_BIN_DIR. Authorisation as a production cluster has it: the Node
# authorizer and the NodeRestriction admission plugin confine each node's identity
# (system:node:<name>, its client certificate) to its own objects; RBAC for the rest.
apiserver_start() {
	local pki="$PKI_DIR" _extra=() audit
	extra_args BERTH_APISERVER_EXTRA_ARGS
	audit="$(apiserver_audit_policy)"
	start_bg kube-apiserver "$(component_log kube-apiserver)" "$1/kube-apiserver" \
		--bind-address="$BRIDGE_IP" --advertise-address="$BRIDGE_IP" --secure-port="$APISERVER_PORT" \
		--insecure-port=0 \
		--etcd-servers="$ETCD_CLIENT_URL" \
		--cert-dir="$BERTH_STATE/apiserver" \
		--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--token-auth-file="$TOKEN_FILE" \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc \
		--api-audiences=https://kubernetes.default.svc \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$pki/ca.crt" \
		--kubelet-preferred-address-types=InternalIP \
		--kubelet-port="$AGENT_PORT" \
		--allow-privileged=true \
		--audit-policy-file="$audit" --audit-log-path="$(component_log audit)" \
		--audit-log-maxsize=200 --audit-log-maxbackup=1 \
		--profiling=false \
		--v=1 "${_extra[@]}"
}
# /readyz needs no credentials in 1.20 (system:public-info-viewer).
apiserver_healthy() {
	curl -fsS --max-time 2 --cacert "$PKI_DIR/ca.crt" "$APISERVER_URL/readyz" | grep -q '^ok'
}

# kcm_start KUBE_BIN_DIR
kcm_start() {
	local _extra=()
	extra_args BERTH_KCM_EXTRA_ARGS
	start_bg kube-controller-manager "$(component_log kube-controller-manager)" "$1/kube-controller-manager" \
		--kubeconfig="$KCM_KUBECONFIG" \
		--authentication-kubeconfig="$KCM_KUBECONFIG" --authorization-kubeconfig="$KCM_KUBECONFIG" \
		--bind-address=127.0.0.1 --secure-port="$KCM_PORT" --port=0 \
		--cert-dir="$BERTH_STATE/kube-controller-manager" \
		--controllers="$KCM_CONTROLLERS" \
		--use-service-account-credentials=true \
		--service-account-private-key-file="$PKI_DIR/sa.key" \
		--root-ca-file="$PKI_DIR/ca.crt" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--leader-elect=false \
		--v=1 "${_extra[@]}"
}
kcm_healthy() { curl -fsSk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz" | grep -q '^ok'; }

# scheduler_start KUBE_BIN_DIR: kube-scheduler 1.20 places the pods whose
# schedulerName is default-scheduler (Deployments', the e2e suite's); Berth's
# Workload pods name Berth's scheduler and are left to it. Berth's nodes carry the
# NoSchedule taint berth.dev/agent unless the agent registers without it.
scheduler_start() {
	start_bg kube-scheduler "$(component_log kube-scheduler)" "$1/kube-scheduler" \
		--kubeconfig="$SCHEDULER_KUBECONFIG" \
		--authentication-kubeconfig="$SCHEDULER_KUBECONFIG" --authorization-kubeconfig="$SCHEDULER_KUBECONFIG" \
		--bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --port=0 \
		--cert-dir="$BERTH_STATE/kube-scheduler" \
		--leader-elect=false \
		--v=1
}
scheduler_healthy() { curl -fsSk --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz" | grep -q '^ok'; }

# registry_config: CNCF distribution 2.8. Pushes of manifests are POSTed to the
# Berth controller's webhook. While nothing listens there the registry keeps the
# events in an in-memory queue and retries them with back-off; pushes and pulls
# are not held up by it. Pulls and blob events are not sent at all (containerd
# pulls would otherwise flood the queue). Log level warn: at info the registry
# logs the endpoint's headers, i.e. the webhook token, at start. Its access log
# (one line per request) is written regardless of the level.
registry_config() {
	local token
	token="$(webhook_token)"
	mkdir -p "$BERTH_STATE/registry/data"
	cat >"$BERTH_STATE/registry/config.yml" <<-EOF
		version: 0.1
		log:
		  level: warn
		  formatter: text
		storage:
		  filesystem:
		    rootdirectory: $BERTH_STATE/registry/data
		  delete:
		    enabled: true
		  maintenance:
		    uploadpurging:
		      enabled: false
		http:
		  addr: $REGISTRY
		  headers:
		    X-Content-Type-Options: [nosniff]
		notifications:
		  events:
		    includereferences: true
		  endpoints:
		    - name: berth-controller
		      url: http://$WEBHOOK_ADDR/registry/notifications
		      headers:
		        Authorization: [Bearer $token]
		      timeout: 2s
		      threshold: 3
		      backoff: 5s
		      ignoredmediatypes:
		        - application/octet-stream
		      ignore:
		        actions:
		          - pull
	EOF
	chmod 0600 "$BERTH_STATE/registry/config.yml"
}
registry_start() {
	registry_config
	start_bg registry "$(component_log registry)" docker-registry serve "$BERTH_STATE/registry/config.yml"
}
registry_healthy() { curl -fsS --max-time 2 -o /dev/null "http://$REGISTRY/v2/"; }

# component_healthy NAME: the health probe of a control-plane component.
component_healthy() {
	case "$1" in
	etcd) etcd_healthy ;;
	kube-apiserver) apiserver_healthy ;;
	kube-controller-manager) kcm_healthy ;;
	kube-scheduler) scheduler_healthy ;;
	registry) registry_healthy ;;
	*) return 1 ;;
	esac
}

# crd_files: the files in <repo>/crds/*.yaml that hold CustomResourceDefinitions
# (others there, such as a kustomization.yaml, are not API objects).
crd_files() {
	local f
	for f in "$BERTH_REPO"/crds/*.yaml; do
		[[ -f "$f" ]] && grep -qE '^kind: *CustomResourceDefinition' "$f" && echo "$f"
	done
	return 0
}

# apply_crds: kubectl apply of every CRD file, then wait until all are
# established. Prints how many files it applied.
apply_crds() {
	local files=() f out
	mapfile -t files < <(crd_files)
	for f in "${files[@]}"; do
		out="$(kc apply -f "$f" 2>&1)" || die "kubectl apply -f $f failed: $out"
	done
	if ((${#files[@]})); then
		kc wait --for condition=established --timeout=60s crd --all >/dev/null 2>&1 ||
			die "CRDs not established within 60s (log: $(component_log kube-apiserver))"
	fi
	echo "${#files[@]}"
}

# apply_local_rbac: the bindings of the local cluster's token users to Berth's
# roles: manifests/rbac-local.yaml if it exists, else the kustomization in
# manifests/local/ (CRDs, namespace, roles, bindings). Prints what it applied.
apply_local_rbac() {
	local out
	if [[ -f "$BERTH_REPO/manifests/rbac-local.yaml" ]]; then
		out="$(kc apply -f "$BERTH_REPO/manifests/rbac-local.yaml" 2>&1)" ||
			die "kubectl apply -f manifests/rbac-local.yaml failed: $out"
		echo manifests/rbac-local.yaml
	elif [[ -f "$BERTH_REPO/manifests/local/kustomization.yaml" ]]; then
		out="$(kc apply -k "$BERTH_REPO/manifests/local" 2>&1)" ||
			die "kubectl apply -k manifests/local failed: $out"
		echo manifests/local/
	fi
}
