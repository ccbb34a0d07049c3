#!/usr/bin/env bash
# Install the Debian packages of ops/debian-packages.txt that are missing.
# CI starts from a fresh machine with only Python: the project's own files must
# bring what its tests need (a browser, pdftoppm, promtool...).
set -euo pipefail
list="$(dirname "$0")/debian-packages.txt"
wanted=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list" | awk '{print $1}')
[ -z "$wanted" ] && exit 0
missing=()
for pkg in $wanted; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# One apt at a time on a machine where several checkouts set up at once.
exec 9>/tmp/ebill-apt.lock
flock 9
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
