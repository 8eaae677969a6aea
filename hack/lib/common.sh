# shellcheck shell=bash
# Shared helpers for the hack/ scripts: paths, logging, package checks, waiting,
# and process bookkeeping by recorded pid. Sourced, never executed.

# Paths. Everything built lives in the cache (outside the repo); everything a
# running cluster owns lives in the state dir, so `down` can remove it wholesale.
BERTH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BERTH_CACHE="${BERTH_CACHE:-$HOME/.cache/berth}"
BERTH_STATE="${BERTH_STATE:-$HOME/.berth/local}"
BERTH_BIN_DIR="${BERTH_BIN_DIR:-$BERTH_REPO/target/debug}"
KUBE_VERSION="1.20.2"
KUBE_CACHE_DIR="$BERTH_CACHE/kubernetes-$KUBE_VERSION"
export BERTH_REPO BERTH_CACHE BERTH_STATE KUBE_CACHE_DIR

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
	exit 1
}

require_root() {
	[[ $EUID -eq 0 ]] || die "$(basename "$0") needs root (network namespaces, containerd, mounts)"
}

# need_cmd CMD PACKAGE: one clear line if a command is missing.
need_cmd() {
	command -v "$1" >/dev/null 2>&1 || die "missing command '$1' (Debian package '$2'): run hack/deps.sh"
}

# pkg_installed PACKAGE: true when dpkg has it fully installed.
pkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# apt_install PKG...: installs only the packages that are missing, quietly.
apt_install() {
	local missing=() p
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing Debian packages: ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/berth-apt.log 2>&1; then
		# apt lists may be stale or absent on a fresh machine: refresh once and retry.
		apt-get update -qq >>/tmp/berth-apt.log 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/berth-apt.log 2>&1 ||
			die "apt-get could not install: ${missing[*]} (see /tmp/berth-apt.log)"
	fi
}

# wait_for DESCRIPTION TIMEOUT_S LOGFILE PIDNAME CMD...: polls CMD until it
# succeeds. Fails loudly, naming what was not ready and where its log is, on
# timeout or as soon as the process recorded as PIDNAME ("-": none) has exited.
wait_for() {
	local what="$1" timeout="$2" logfile="$3" pidname="$4"
	shift 4
	local deadline=$((SECONDS + timeout)) why=""
	until "$@" >/dev/null 2>&1; do
		if [[ "$pidname" != - ]] && ! pid_alive "$pidname"; then
			why="exited"
		elif ((SECONDS >= deadline)); then
			why="not ready after ${timeout}s"
		else
			sleep 0.3
			continue
		fi
		if [[ -n "$logfile" && -f "$logfile" ]]; then
			echo "---- last lines of $logfile ----" >&2
			tail -n 15 "$logfile" >&2 || true
			echo "----" >&2
		fi
		die "$what $why (log: ${logfile:-none})"
	done
}

# port_holder ADDR PORT: prints the listening socket (and its process) that
# holds ADDR:PORT, directly or through a wildcard address; nothing if free.
port_holder() {
	local addr="$1" port="$2"
	ss -Hltnp "sport = :$port" 2>/dev/null | awk -v a="$addr" -v p="$port" \
		'$4 == a":"p || $4 == "0.0.0.0:"p || $4 == "*:"p || $4 == "[::]:"p {print; exit}'
}

# port_free ADDR PORT: fails with one clear line when something already listens.
port_free() {
	local line
	line="$(port_holder "$1" "$2")"
	[[ -z "$line" ]] || die "port $1:$2 is already in use: $line"
}

# --- processes, by recorded pid ---------------------------------------------
# Every process a script starts gets a pid file under $BERTH_STATE/pids/NAME.pid
# holding "PID STARTTIME" (start time in clock ticks since boot, from
# /proc/PID/stat). Stopping means signalling exactly that process, never matching
# by name; the start time guards against a pid reused after a reboot or a crash.

pid_file() { echo "$BERTH_STATE/pids/$1.pid"; }

# proc_stat PID: prints "STATE STARTTIME" of a live process (fails if gone).
# The command name in /proc/PID/stat may hold spaces and parentheses, so the
# fields are counted from the last ')'.
proc_stat() {
	local stat f
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	read -ra f <<<"${stat##*) }"
	echo "${f[0]} ${f[19]}"
}

# recorded_pid NAME: the pid of NAME if it is still the process that was started.
recorded_pid() {
	local f pid start state now
	f="$(pid_file "$1")"
	[[ -f "$f" ]] || return 1
	read -r pid start <"$f" || true
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	read -r state now < <(proc_stat "$pid") || return 1
	[[ -z "$start" || "$start" == "$now" ]] || return 1
	[[ "$state" != Z ]] || return 1
	echo "$pid"
}

# pid_alive NAME: the recorded process exists and is not a zombie.
pid_alive() { recorded_pid "$1" >/dev/null; }

# start_bg NAME LOGFILE CMD...: starts CMD detached (own session, so the
# caller's terminal signals do not reach it) and records its pid. setsid execs
# in place (the background child is no group leader), so $! is CMD's pid.
start_bg() {
	local name="$1" logfile="$2" pid start
	shift 2
	mkdir -p "$BERTH_STATE/pids" "$(dirname "$logfile")"
	# No descriptor but 0-2 lives on in the daemons: not the cluster lock's (9),
	# nor a caller's (`flock FILE hack/up.sh` holds FILE on descriptor 3, and a
	# daemon that inherits it holds FILE for as long as it runs). The subshell
	# execs setsid, which execs CMD in place, so $! is still CMD's pid.
	(
		for fd in "/proc/$BASHPID/fd/"*; do
			fd="${fd##*/}"
			((fd > 2)) && eval "exec $fd>&-"
		done
		exec setsid "$@" </dev/null >>"$logfile" 2>&1
	) &
	pid=$!
	start="$(proc_stat "$pid" | cut -d' ' -f2)" || true
	echo "$pid ${start:-}" >"$(pid_file "$name")"
}

# stop_pid PID [TIMEOUT_S]: TERM, wait, then KILL.
stop_pid() {
	local pid="$1" timeout="${2:-10}" i state
	[[ -d /proc/$pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < timeout * 10; i++)); do
		read -r state _ < <(proc_stat "$pid") || return 0
		[[ "$state" == Z ]] && return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.2
}

# stop_named NAME [TIMEOUT_S]: stops the process recorded as NAME (if it is
# still that process), drops the pid file.
stop_named() {
	local pid
	if pid="$(recorded_pid "$1")"; then
		log "stopping $1 (pid $pid)"
		stop_pid "$pid" "${2:-10}"
	fi
	rm -f "$(pid_file "$1")"
}

# tcp_open HOST PORT: something accepts TCP connections there.
tcp_open() { timeout 2 bash -c ": </dev/tcp/$1/$2" 2>/dev/null; }

# cluster_lock: serialises up and down on one state dir (several people and
# test runs share the machine). Held on fd 9 until the script exits; scripts
# that up/down call inherit it (BERTH_LOCK_HELD) instead of waiting for themselves.
cluster_lock() {
	[[ "${BERTH_LOCK_HELD:-0}" == 1 ]] && return 0
	mkdir -p "$(dirname "$BERTH_STATE")"
	exec 9>"$BERTH_STATE.lock"
	if ! flock -n 9; then
		log "waiting for another hack/up.sh or hack/down.sh on $BERTH_STATE to finish ($BERTH_STATE.lock)"
		flock -w 900 9 || die "another hack/up.sh or hack/down.sh still holds $BERTH_STATE.lock after 15 minutes"
	fi
	export BERTH_LOCK_HELD=1
}
