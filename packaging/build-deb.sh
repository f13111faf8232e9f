#!/usr/bin/env bash
# Builds dist/skroutz-infra_<version>_amd64.deb from this tree, offline, with dpkg-buildpackage and
# debhelper (Debian packages debhelper, dpkg-dev and fakeroot). `make deb` runs this script.
#
# Needs node_modules installed (make install): debian/rules runs `make build`, which reuses an
# up-to-date dist/skroutz-infra. Everything the build writes stays inside the tree: the .deb,
# .buildinfo and .changes go to dist/, and debhelper's scratch files are cleaned afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
  echo "build-deb: $*" >&2
  exit 1
}

for tool in dpkg-buildpackage dh dpkg-parsechangelog; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found: apt-get install debhelper dpkg-dev fakeroot"
done
[ -f node_modules/.package-lock.json ] || die "node_modules is missing: run make install first"

# The package version comes from debian/changelog and must match package.json, so the version
# the executable prints and the version dpkg shows never disagree.
pkg_version=$(node_modules/.bin/node -p "require('./package.json').version")
deb_version=$(dpkg-parsechangelog --show-field Version)
if [ "${deb_version%%-*}" != "$pkg_version" ]; then
  die "debian/changelog is at $deb_version but package.json at $pkg_version; add a changelog entry:
  dch --newversion $pkg_version 'Release $pkg_version.'"
fi

out=$PWD/dist
mkdir -p "$out"
arch=$(dpkg-architecture --query DEB_HOST_ARCH)
base="skroutz-infra_${deb_version}_${arch}"

# -b: binary only (no source package); -us -uc: nothing to sign; --post-clean: remove
# debian/skroutz-infra and the debhelper stamps once the .deb exists. The Makefile's PATH puts
# the pinned Node.js first, so `make build` inside debian/rules finds it either way.
export DEB_DESTDIR="$out"
export PATH="$PWD/node_modules/.bin:$PATH"
dpkg-buildpackage -b -us -uc --post-clean \
  --buildinfo-option="-u$out" --changes-option="-u$out" \
  --buildinfo-file="$out/$base.buildinfo" --changes-file="$out/$base.changes"

deb="$out/$base.deb"
[ -f "$deb" ] || die "dpkg-buildpackage finished but $deb is missing"
echo "built $deb ($(du -h "$deb" | cut -f1))"
