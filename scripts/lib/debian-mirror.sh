# shellcheck shell=bash
# debian_mirror [SUITE]: the host's Debian mirror URI for SUITE (default: the host's release codename), read from
# its apt sources at run time (deb822 *.sources first, then the one-line format), so no script names a mirror.
# DEBIAN_MIRROR overrides it.
debian_mirror() {
  local suite="${1:-}" f uri
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "$DEBIAN_MIRROR"
    return
  fi
  [ -n "$suite" ] || suite="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
  [ -n "$suite" ] || return 0
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri="$(awk -v c="$suite" 'BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; comps = ""
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", line); uris = line }
          else if (line ~ /^Suites:/) { sub(/^Suites:/, "", line); suites = " " line " " }
          else if (line ~ /^Components:/) { sub(/^Components:/, "", line); comps = " " line " " }
        }
        gsub(/\t/, " ", suites); gsub(/\t/, " ", comps)
        if (uris != "" && index(suites, " " c " ") && index(comps, " main ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f")"
    if [ -n "$uri" ]; then
      printf '%s\n' "$uri"
      return
    fi
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v c="$suite" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      comps = " "; for (j = i + 2; j <= NF; j++) comps = comps $j " "
      if ($(i + 1) == c && index(comps, " main ")) { print $i; exit }
    }'
}
