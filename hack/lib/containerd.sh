# shellcheck shell=bash
# One containerd per host, each with its own root, state, socket, CNI config and
# runc root, so several run side by side. Everything of host NODE lives under
# $BERTH_STATE/nodes/NODE:
#   containerd.toml containerd.sock containerd.log  root/ state/ opt/ runc/
#   certs.d/<registry>/hosts.toml   cni/net.d/10-berth.conflist   cni/ipam/   logs/ (pod logs)

# containerd_config NODE: writes the config, registry hosts and CNI conflist.
containerd_config() {
	local node="$1" dir
	dir="$(node_dir "$node")"
	mkdir -p "$dir"/{root,state,opt,runc,logs,cni/net.d,cni/ipam,"certs.d/$REGISTRY"}
	# restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE, runc cannot set
	#   oom_score_adj=-998 and every RunPodSandbox fails ("can't get final child's
	#   PID from pipe: EOF") unless containerd keeps the adjustment >= its own.
	# netns_mounts_under_state_dir: pod network namespaces are bind-mounted under
	#   this host's state dir instead of the machine-wide /var/run/netns.
	# runc Root: runc's container state per host, not the shared /run/containerd/runc.
	# The opt plugin defaults to the machine-wide /opt/containerd.
	cat >"$dir/containerd.toml" <<-EOF
		version = 2
		root = "$dir/root"
		state = "$dir/state"
		oom_score = 0

		[grpc]
		  address = "$dir/containerd.sock"

		[ttrpc]
		  address = ""

		[debug]
		  level = "info"

		[metrics]
		  address = ""

		[plugins."io.containerd.internal.v1.opt"]
		  path = "$dir/opt"

		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "$REGISTRY/berth/pause:1"
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  enable_selinux = false
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		  max_container_log_line_size = 16384

		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"

		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"

		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        Root = "$dir/runc"
		        SystemdCgroup = false

		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$dir/cni/net.d"
		    max_conf_num = 1

		  [plugins."io.containerd.grpc.v1.cri".registry]
		    config_path = "$dir/certs.d"
	EOF
	# The local registry speaks plain HTTP: declared per registry host.
	cat >"$dir/certs.d/$REGISTRY/hosts.toml" <<-EOF
		server = "http://$REGISTRY"

		[host."http://$REGISTRY"]
		  capabilities = ["pull", "resolve"]
		  skip_verify = true
	EOF
	cni_config "$node"
}

# cni_config NODE: bridge + host-local + portmap + loopback for the host's pod
# subnet. The bridge name and the host-local dataDir must be unique per host, or
# the hosts' IPAM and bridges collide. No ipMasq: pods keep their IPs across hosts.
cni_config() {
	local node="$1" dir cidr
	dir="$(node_dir "$node")"
	cidr="$(node_pod_cidr "$node")"
	cat >"$dir/cni/net.d/10-berth.conflist" <<-EOF
		{
		  "cniVersion": "0.4.0",
		  "name": "berth-$node",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "$(node_cni_bridge "$node")",
		      "isGateway": true,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "dataDir": "$dir/cni/ipam",
		        "ranges": [[{"subnet": "$cidr"}]],
		        "routes": [{"dst": "0.0.0.0/0"}]
		      }
		    },
		    {"type": "portmap", "capabilities": {"portMappings": true}},
		    {"type": "loopback"}
		  ]
		}
	EOF
}

# containerd_start NODE: in the host's network namespace and in a mount
# namespace of its own (propagation slave): the overlay, shm and netns mounts it
# makes stay out of the machine's mount table and vanish with its processes.
containerd_start() {
	local node="$1" dir
	dir="$(node_dir "$node")"
	# Before containerd's mount namespace is made, so the agent's tmpfs volumes reach it.
	berth_agent_root_shared "$node"
	rm -f "$dir/containerd.sock"
	start_bg "containerd-$node" "$dir/containerd.log" \
		nsenter --net="/run/netns/$(node_netns "$node")" -- \
		unshare --mount --propagation slave -- \
		containerd --config "$dir/containerd.toml"
}

containerd_healthy() { ctr --address "$(node_sock "$1")" --timeout 2s version >/dev/null 2>&1; }

# containerd_shims NODE: pids of the shims of this host's containerd, found by
# the -address argument that points at this host's socket.
containerd_shims() {
	local sock pid
	sock="$(node_sock "$1")"
	for pid in $(pgrep -f -- "-address $sock" 2>/dev/null || true); do
		[[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == *containerd-shim* ]] && echo "$pid"
	done
	return 0
}

# containerd_clean NODE: stops the host's containers, shims and containerd and
# whatever else still runs in its network namespace; removes runc state.
#  1. while containerd runs: kill and delete every task through it (the shims
#     then unmount rootfs and exit cleanly);
#  2. runc delete --force anything runc still knows (kills by cgroup, removes cgroups);
#  3. containerd by pid, then any shim still pointing at this host's socket;
#  4. every process left in the host's network namespace (agent, strays).
containerd_clean() {
	local node="$1" sock ns id pid runc_ns
	sock="$(node_sock "$node")"
	if containerd_healthy "$node"; then
		for ns in $(ctr --address "$sock" --timeout 5s namespaces list -q 2>/dev/null); do
			for id in $(ctr --address "$sock" --timeout 5s -n "$ns" tasks list -q 2>/dev/null); do
				ctr --address "$sock" --timeout 10s -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
				ctr --address "$sock" --timeout 10s -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
			done
		done
	fi
	for runc_ns in "$(node_dir "$node")"/runc/*/; do
		[[ -d "$runc_ns" ]] || continue
		for id in $(runc --root "$runc_ns" list -q 2>/dev/null); do
			runc --root "$runc_ns" delete --force "$id" >/dev/null 2>&1 || true
		done
	done
	stop_named "containerd-$node" 10
	for pid in $(containerd_shims "$node"); do stop_pid "$pid" 3; done
	ns="$(node_netns "$node")"
	if [[ -e "/run/netns/$ns" ]]; then
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			log "stopping pid $pid left in netns $ns: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)"
			stop_pid "$pid" 3
		done
	fi
}

# unmount_under DIR: unmounts whatever is still mounted below DIR, deepest first.
unmount_under() {
	local dir="$1" m
	[[ -d "$dir" ]] || return 0
	dir="$(realpath "$dir")"
	awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "could not unmount $m"
	done
}
