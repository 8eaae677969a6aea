# shellcheck shell=bash
# ============================================================================
# BERTH COMPONENTS HOOK: how the local cluster starts Berth's own binaries.
# Adjust here (environment, flags) as the controller and agent evolve; up.sh
# only calls berth_start_all and down.sh berth_stop_all.
# ============================================================================

berth_controller_bin() { echo "$BERTH_BIN_DIR/berth-controller"; }
berth_agent_bin() { echo "$BERTH_BIN_DIR/berth-agent"; }

# berth_start_controller: in the root namespace; the registry's notifications
# arrive at its webhook on 127.0.0.1:8085. NO_COLOR: logs go to files.
# BERTH_IMPORT_INTERVAL (scheduled re-imports) is passed through from up.sh's
# environment, 30s by default here (the controller's own default is 15m), so a
# scheduled tag moves within half a minute on the local cluster.
berth_start_controller() {
	local bin holder
	bin="$(berth_controller_bin)"
	if [[ ! -x "$bin" ]]; then
		log "skipping berth-controller: $bin not built (cargo build, or set BERTH_BIN_DIR)"
		return 0
	fi
	# Someone may run their own controller (cargo run) on the webhook port: the
	# cluster is still useful, so this is a warning, not a failure of up.
	holder="$(port_holder "${WEBHOOK_ADDR%:*}" "${WEBHOOK_ADDR##*:}")"
	if [[ -n "$holder" ]]; then
		warn "not starting berth-controller: $WEBHOOK_ADDR is already in use: $holder"
		return 0
	fi
	start_bg berth-controller "$LOG_DIR/berth-controller.log" env \
		KUBECONFIG="$CONTROLLER_KUBECONFIG" \
		BERTH_WEBHOOK_ADDR="$WEBHOOK_ADDR" \
		BERTH_WEBHOOK_TOKEN_FILE="$WEBHOOK_TOKEN_FILE" \
		BERTH_IMPORT_INTERVAL="${BERTH_IMPORT_INTERVAL:-30s}" \
		RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
		"$bin"
	log "started berth-controller (import interval ${BERTH_IMPORT_INTERVAL:-30s}; log: $LOG_DIR/berth-controller.log)"
}

# berth_agent_root NODE: the agent's --root-dir (pod volumes, /etc/hosts, termination
# messages under <root>/pods/<uid>/).
berth_agent_root() { echo "$(node_dir "$1")/agent"; }

# berth_agent_root_shared NODE: the agent's root dir as a shared bind mount, made before the
# host's containerd starts (containerd_start calls it). containerd runs in a mount namespace
# of its own (slave of the machine's) and the machine's root mount is private here: without
# this, the tmpfs the agent mounts for secret, projected, downward API and Memory emptyDir
# volumes would never reach containerd, and containers would see empty directories.
berth_agent_root_shared() {
	local root
	root="$(berth_agent_root "$1")"
	mkdir -p "$root"
	mountpoint -q "$root" || mount --bind "$root" "$root"
	mount --make-rshared "$root"
}

# The library that moves a process's clock (Debian's libfaketime, multi-threaded variant).
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1

# berth_start_agent NODE: inside the host's network namespace, with its own
# identity, CRI socket, pod CIDR and serving cert for :10250 (logs, exec, attach,
# port-forward), which authenticates clients by a certificate of the cluster CA or a
# bearer token and authorises each request by SubjectAccessReview (the API server's
# kubelet client cert holds system:kubelet-api-admin: manifests/local/bindings.yaml).
# BERTH_AGENT_CLOCK_OFFSET (signed seconds, e.g. +60) runs it with its clock that far off
# the rest of the cluster's (libfaketime), for tests of clock skew.
# Cluster DNS: the agent answers DNS on its node's address (BERTH_DNS_LISTEN, UDP and TCP
# :53) and gives that address to its ClusterFirst pods (BERTH_CLUSTER_DNS), so each pod asks
# its own node's agent (node-agent/src/cluster_dns/). Pods reach the node's address through
# their CNI bridge's gateway, which is in the host's netns, where that address is local.
berth_start_agent() {
	local node="$1" bin dir clock=()
	bin="$(berth_agent_bin)"
	dir="$(node_dir "$node")"
	if [[ -n "${BERTH_AGENT_CLOCK_OFFSET:-}" ]]; then
		[[ "$BERTH_AGENT_CLOCK_OFFSET" =~ ^[+-][0-9]+$ ]] ||
			die "BERTH_AGENT_CLOCK_OFFSET takes signed seconds (+60), got '$BERTH_AGENT_CLOCK_OFFSET'"
		[[ -f "$FAKETIME_LIB" ]] || die "no $FAKETIME_LIB: hack/deps.sh installs libfaketime"
		clock=(LD_PRELOAD="$FAKETIME_LIB" FAKETIME="$BERTH_AGENT_CLOCK_OFFSET" FAKETIME_DONT_FAKE_MONOTONIC=1)
	fi
	start_bg "berth-agent-$node" "$dir/agent.log" \
		nsenter --net="/run/netns/$(node_netns "$node")" -- env "${clock[@]}" \
		KUBECONFIG="$dir/kubeconfig" \
		BERTH_NODE_NAME="$node" \
		BERTH_NODE_IP="$(node_ip "$node")" \
		BERTH_DNS_LISTEN="$(node_ip "$node"):53" \
		BERTH_CLUSTER_DNS="$(node_ip "$node")" \
		BERTH_CRI_ENDPOINT="unix://$(node_sock "$node")" \
		BERTH_POD_CIDR="$(node_pod_cidr "$node")" \
		BERTH_TLS_CERT="$PKI_DIR/node-$node.crt" \
		BERTH_TLS_KEY="$PKI_DIR/node-$node.key" \
		BERTH_CLIENT_CA="$PKI_DIR/ca.crt" \
		BERTH_POD_LOG_DIR="$dir/logs" \
		BERTH_ROOT_DIR="$(berth_agent_root "$node")" \
		RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
		"$bin"
}

berth_start_agents() {
	local node bin
	bin="$(berth_agent_bin)"
	if [[ ! -x "$bin" ]]; then
		log "skipping berth-agent: $bin not built (cargo build, or set BERTH_BIN_DIR)"
		return 0
	fi
	for node in "$@"; do berth_start_agent "$node"; done
	log "started berth-agent on $* (logs: $NODES_DIR/<node>/agent.log)"
}

berth_start_all() {
	[[ "${BERTH_NO_COMPONENTS:-0}" == 1 ]] && {
		log "BERTH_NO_COMPONENTS=1: not starting berth-controller and berth-agent"
		return 0
	}
	berth_start_controller
	berth_start_agents "$@"
	berth_check_alive "$@"
}

# berth_start_missing NODE...: on a running cluster, (re)starts the Berth
# binaries that exist but do not run (built since, or exited).
berth_start_missing() {
	local node
	[[ "${BERTH_NO_COMPONENTS:-0}" == 1 ]] && return 0
	if [[ -x "$(berth_controller_bin)" ]] && ! pid_alive berth-controller; then
		berth_start_controller
	fi
	if [[ -x "$(berth_agent_bin)" ]]; then
		for node in "$@"; do
			pid_alive "berth-agent-$node" && continue
			berth_start_agent "$node"
			log "started berth-agent on $node (log: $(node_dir "$node")/agent.log)"
		done
	fi
	berth_check_alive "$@"
}

# berth_check_alive NODE...: a Berth binary that exits at once (not written
# yet, or failing) is reported with its log, but does not fail the cluster.
berth_check_alive() {
	local name log node
	sleep 1
	for name in $(berth_component_names "$@"); do
		[[ -f "$(pid_file "$name")" ]] || continue
		pid_alive "$name" && continue
		node="${name#berth-agent-}"
		if [[ "$name" == berth-controller ]]; then log="$LOG_DIR/berth-controller.log"; else log="$(node_dir "$node")/agent.log"; fi
		warn "$name exited right after start (log: $log): $(tail -n 3 "$log" 2>/dev/null | tr '\n' ' ')"
	done
}

berth_stop_all() {
	local node
	for node in "$@"; do stop_named "berth-agent-$node" 10; done
	stop_named berth-controller 10
}

# berth_component_names NODE...: pid-file names of the Berth processes (for status).
berth_component_names() {
	local node
	echo berth-controller
	for node in "$@"; do echo "berth-agent-$node"; done
}
