# shellcheck shell=bash
# Test images built without a container daemon: umoci turns a root filesystem
# (busybox-static: a whole userland in one static file) into an OCI image
# layout, skopeo pushes the layout to the local registry. Layouts are cached
# under $BERTH_CACHE/images, so the same image keeps the same digest across
# `up`s until the cache is removed.

IMAGES_CACHE="$BERTH_CACHE/images"
# Bump when what an image contains changes, to invalidate cached layouts.
IMAGES_RECIPE=2

# image_rootfs DIR: a minimal busybox userland in DIR.
image_rootfs() {
	local root="$1" applet
	mkdir -p "$root"/{bin,etc,tmp,www,proc,sys,dev}
	install -m 0755 /bin/busybox "$root/bin/busybox"
	for applet in sh sleep echo cat httpd hostname date env ls wget nc kill; do
		ln -sf busybox "$root/bin/$applet"
	done
	printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	chmod 1777 "$root/tmp"
}

# image_layout NAME TAG FILL_FN CONFIG_ARGS...: builds (or reuses) the cached OCI
# layout $IMAGES_CACHE/NAME-TAG for image NAME:TAG. FILL_FN ROOTFS adds the
# image-specific files; CONFIG_ARGS go to `umoci config`. Prints the layout dir.
image_layout() {
	local name="$1" tag="$2" fill="$3"
	shift 3
	local layout="$IMAGES_CACHE/$name-$tag"
	local stamp="$layout/.berth-recipe"
	if [[ -f "$stamp" && "$(<"$stamp")" == "$IMAGES_RECIPE" ]]; then
		echo "$layout"
		return 0
	fi
	rm -rf "$layout" "$layout.bundle"
	mkdir -p "$IMAGES_CACHE"
	umoci init --layout "$layout" >/dev/null
	umoci new --image "$layout:$tag" >/dev/null
	umoci unpack --image "$layout:$tag" "$layout.bundle" >/dev/null
	image_rootfs "$layout.bundle/rootfs"
	"$fill" "$layout.bundle/rootfs"
	umoci repack --image "$layout:$tag" "$layout.bundle" >/dev/null
	umoci config --image "$layout:$tag" --os linux --architecture amd64 "$@" >/dev/null
	umoci gc --layout "$layout" >/dev/null
	rm -rf "$layout.bundle"
	echo "$IMAGES_RECIPE" >"$stamp"
	echo "$layout"
}

# image_push LAYOUT TAG REF: pushes an OCI layout tag to REF over plain HTTP.
image_push() {
	local layout="$1" tag="$2" ref="$3" out
	if ! out="$(skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$tag" "docker://$ref" 2>&1)"; then
		die "pushing $ref failed: $out"
	fi
}

_fill_pause() { :; }

# The sandbox ("pause") image. Its process must never exit: with a plain shell
# as command the sandbox dies at once and every CreateContainer then fails with
# `namespace path: lstat /proc/N/ns/ipc`. As pid 1 it only gets signals it
# handles, hence the trap, so a stop does not wait for a SIGKILL timeout.
# shellcheck disable=SC2016 # the entrypoint script is expanded in the container
build_pause() {
	image_layout pause 1 _fill_pause \
		--config.entrypoint /bin/sh --config.entrypoint -c \
		--config.entrypoint 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done' \
		--config.workingdir / --config.label org.opencontainers.image.title=berth-pause
}

_DEMO_VERSION=""
_fill_demo() {
	local root="$1"
	printf 'berth-demo %s\n' "$_DEMO_VERSION" >"$root/www/index.html"
	printf 'ok\n' >"$root/www/healthz"
	printf '%s\n' "$_DEMO_VERSION" >"$root/www/version"
	# /cgi-bin/whoami answers "VERSION HOSTNAME": which replica behind a Service answered.
	mkdir -p "$root/www/cgi-bin"
	printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s %%s\\n" "$BERTH_DEMO_VERSION" "$(hostname)"\n' >"$root/www/cgi-bin/whoami"
	chmod 0755 "$root/www/cgi-bin/whoami"
}

# The demo image: busybox httpd on :8080 answering "berth-demo VERSION" (and
# "VERSION HOSTNAME" on /cgi-bin/whoami). It
# prints a line at start so container logs are never empty, and traps TERM
# (httpd as pid 1 would ignore it) so pods stop at once.
# shellcheck disable=SC2016 # the entrypoint script is expanded in the container
build_demo() {
	local version="$1"
	_DEMO_VERSION="$version"
	image_layout demo "$version" _fill_demo \
		--config.env "BERTH_DEMO_VERSION=$version" \
		--config.exposedports 8080/tcp \
		--config.entrypoint /bin/sh --config.entrypoint -c \
		--config.entrypoint 'echo "berth-demo $BERTH_DEMO_VERSION starting on :8080 ($(hostname))"; httpd -f -v -p 8080 -h /www & trap "kill $! 2>/dev/null; exit 0" TERM INT; wait $!' \
		--config.workingdir / --config.label "org.opencontainers.image.version=$version"
}

# push_pause REGISTRY / push_demo REGISTRY VERSION: build if needed, push.
push_pause() {
	image_push "$(build_pause)" 1 "$1/berth/pause:1"
}
push_demo() {
	image_push "$(build_demo "$2")" "$2" "$1/berth/demo:$2"
}
