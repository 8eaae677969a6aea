#!/usr/bin/env bash
# Stops and starts a control-plane process of the running local cluster, for tests of
# control-plane faults (hack/node.sh does the same for a host):
#
#   hack/control-plane.sh stop etcd             stop etcd (SIGTERM; its data stays on disk)
#   hack/control-plane.sh start etcd            start it again on the same data, wait until healthy
#   hack/control-plane.sh stop kube-apiserver   stop the API server
#   hack/control-plane.sh start kube-apiserver  start it again, wait until /readyz answers
#
# What runs on the hosts (agents, containers) is not touched: a control-plane outage must not
# stop the service. hack/down.sh stops whatever this started.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"

usage() { die "usage: hack/control-plane.sh stop|start etcd|kube-apiserver"; }
(($# == 2)) || usage
op="$1" component="$2"
require_root
[[ -f "$UP_DONE" ]] || die "no local cluster in $BERTH_STATE (hack/up.sh)"

case "$op:$component" in
stop:etcd | stop:kube-apiserver)
	pid_alive "$component" || die "$component is not running"
	stop_named "$component" 20
	log "$component stopped"
	;;
start:etcd)
	pid_alive etcd && die "etcd is already running"
	etcd_start
	wait_for etcd 30 "$(component_log etcd)" etcd etcd_healthy
	log "etcd started on its data ($BERTH_STATE/etcd)"
	;;
start:kube-apiserver)
	pid_alive kube-apiserver && die "kube-apiserver is already running"
	apiserver_start "$("$HACK/build-kube.sh" | tail -n1)"
	wait_for "kube-apiserver ($APISERVER_URL/readyz)" 90 "$(component_log kube-apiserver)" kube-apiserver apiserver_healthy
	log "kube-apiserver started"
	;;
*) usage ;;
esac
