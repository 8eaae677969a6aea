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

# port_free ADDR PORT: fails with one clear line when something already listens.
port_free() {
	local addr="$1" port="$2" line
	line="$(ss -Hltnp "sport = :$port" 2>/dev/null | awk -v a="$addr" -v p="$port" \
		'$4 == a":"p || $4 == "0.0.0.0:"p || $4 == "*:"p || $4 == "[::]:"p {print; exit}')"
	[[ -z "$line" ]] || die "port $addr:$port is already in use: $line"
}

# --- processes, by recorded pid ---------------------------------------------
# Every process a script starts gets a pid file under $BERTH_STATE/pids/NAME.pid;
# stopping means signalling exactly that pid, never matching by name.

pid_file() { echo "$BERTH_STATE/pids/$1.pid"; }

# pid_alive NAME: the recorded process exists and is not a zombie.
pid_alive() {
	local f pid
	f="$(pid_file "$1")"
	[[ -f "$f" ]] || return 1
	pid="$(<"$f")"
	[[ -n "$pid" && -d /proc/$pid ]] || return 1
	[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

# start_bg NAME LOGFILE CMD...: starts CMD detached (own session, so the
# caller's terminal signals do not reach it) and records its pid.
start_bg() {
	local name="$1" logfile="$2"
	shift 2
	mkdir -p "$BERTH_STATE/pids" "$(dirname "$logfile")"
	setsid "$@" </dev/null >>"$logfile" 2>&1 &
	echo $! >"$(pid_file "$name")"
}

# stop_pid PID [TIMEOUT_S]: TERM, wait, then KILL.
stop_pid() {
	local pid="$1" timeout="${2:-10}" i
	[[ -d /proc/$pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < timeout * 10; i++)); do
		[[ -d /proc/$pid ]] || return 0
		[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.2
}

# stop_named NAME [TIMEOUT_S]: stops the process recorded as NAME, drops the pid file.
stop_named() {
	local f
	f="$(pid_file "$1")"
	[[ -f "$f" ]] || return 0
	if pid_alive "$1"; then
		log "stopping $1 (pid $(<"$f"))"
		stop_pid "$(<"$f")" "${2:-10}"
	fi
	rm -f "$f"
}
