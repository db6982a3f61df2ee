#!/bin/bash
# Prints the Debian mirror this machine's apt uses for SUITE (default bookworm) with component main: the first URI
# of an enabled `deb` entry in /etc/apt/sources.list, /etc/apt/sources.list.d/*.list (one-line format) or
# /etc/apt/sources.list.d/*.sources (deb822). No mirror is written in the repository: debootstrap takes the one
# the machine is already configured with. Fails when none is found.
#
# Environment: APT_SOURCES_DIR (default /etc/apt, for tests of this script).
set -euo pipefail

SUITE=${1:-bookworm}
APT=${APT_SOURCES_DIR:-/etc/apt}

one_line() { # file...
	awk -v suite="$SUITE" '
		/^[[:space:]]*#/ { next }
		$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }  # [arch=... signed-by=...]
			uri = $i; s = $(i + 1)
			main = 0
			for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
			if (s == suite && main) { print uri; exit }
		}' "$@"
}

deb822() { # file...
	awk -v suite="$SUITE" '
		function has(list, word,   n, a, k) {
			n = split(list, a, /[[:space:]]+/)
			for (k = 1; k <= n; k++) if (a[k] == word) return 1
			return 0
		}
		function flush(   u) {
			if (has(types, "deb") && has(suites, suite) && has(comps, "main") && tolower(enabled) != "no" && uris != "") {
				split(uris, u, /[[:space:]]+/); print u[1]; done = 1
			}
			types = suites = comps = uris = enabled = ""
		}
		done { exit }
		/^[[:space:]]*#/ { next }
		/^[[:space:]]*$/ { flush(); next }
		{ field = tolower($1); sub(/^[^:]*:[[:space:]]*/, "") }
		field == "types:" { types = $0 }
		field == "uris:" { uris = $0 }
		field == "suites:" { suites = $0 }
		field == "components:" { comps = $0 }
		field == "enabled:" { enabled = $0 }
		END { if (!done) flush() }' "$@"
}

found=""
files=()
[ -f "$APT/sources.list" ] && files+=("$APT/sources.list")
for f in "$APT"/sources.list.d/*.list; do [ -f "$f" ] && files+=("$f"); done
if [ ${#files[@]} -gt 0 ]; then found=$(one_line "${files[@]}" | head -n1); fi
if [ -z "$found" ]; then
	for f in "$APT"/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		found=$(deb822 "$f" | head -n1)
		[ -n "$found" ] && break
	done
fi
if [ -z "$found" ]; then
	echo "apt-mirror: no enabled 'deb' source for suite $SUITE with component main in $APT/sources.list{,.d/}" >&2
	exit 1
fi
echo "${found%/}"
