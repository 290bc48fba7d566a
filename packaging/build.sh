#!/usr/bin/env bash
# Build Aloha's packages from this checkout:
#   aloha_<v>-1_amd64.deb, aloha-face-models_<v>-1_all.deb (Debian 12 / Ubuntu)
#   aloha-<v>-1.x86_64.rpm, aloha-face-models-<v>-1.noarch.rpm (Fedora and friends)
# into target/packages/ (or $1).
#
# The tools are each distribution's own: dpkg-deb with maintainer scripts written the way
# debhelper would generate them (packaging/deb/), and rpmbuild with a spec file
# (packaging/rpm/aloha.spec) that packages the same prebuilt tree. One cargo build feeds both,
# so the .deb and the .rpm carry the same binaries; nothing needs cargo-deb or a debian/
# source package, and the scripts stay small enough to read (docs/packaging.md).
#
# The face models come from packaging/models/fetch.sh (target/models; built if missing):
# a separate architecture-independent package, so the PIN package installs without them.
#
#   packaging/build.sh [OUTDIR]      needs: cargo, dpkg-dev, rpm (scripts/deps)
#
#   ALOHA_PROFILE=dev packaging/build.sh ...   packages the workspace's dev build instead of a
#   release build (what scripts/test does: the tests have just built and run those binaries,
#   and a second, optimised build of tract would take CI most of ten minutes). Packages for
#   users are always built with the default, release.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$repo/target/packages}
work=$repo/target/package-build
models=${ALOHA_MODELS_DIR:-$repo/target/models}

step() { printf '\n== packaging: %s\n' "$*" >&2; }
die() { printf 'packaging/build.sh: %s\n' "$*" >&2; exit 1; }

for tool in cargo dpkg-deb dpkg-shlibdeps rpmbuild gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/deps"
done

version=$(cd "$repo" && cargo metadata --no-deps --format-version 1 |
  grep -o '"name":"aloha","version":"[^"]*"' | head -n1 | sed 's/.*"version":"\([^"]*\)"/\1/')
[ -n "$version" ] || die "cannot read the workspace version from cargo metadata"
# ALOHA_RELEASE: the packaging revision (the upgrade test builds a second one).
release=${ALOHA_RELEASE:-1}
maintainer=${ALOHA_MAINTAINER:-The Aloha developers <aloha@example.org>}
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

profile=${ALOHA_PROFILE:-release}
case $profile in
  release)
    step "release build of alohad, aloha, aloha-presence and pam_aloha.so ($version)"
    (cd "$repo" && cargo build --release --locked -p aloha -p aloha-helper -p aloha-presence -p pam_aloha)
    bin=$repo/target/release ;;
  dev)
    # The workspace's own selection, as the tests build it (tests/src/build.rs): the four
    # packages alone would unify features differently and compile a second copy.
    step "dev build of alohad, aloha, aloha-presence and pam_aloha.so ($version; not for users)"
    (cd "$repo" && cargo build --locked --workspace --lib --bins)
    bin=$repo/target/debug ;;
  *) die "ALOHA_PROFILE is release or dev, not $profile" ;;
esac
for f in alohad aloha aloha-presence libpam_aloha.so; do
  [ -f "$bin/$f" ] || die "cargo did not produce $bin/$f"
done

if [ ! -f "$models/MODELS.md" ]; then
  step "face models (packaging/models/fetch.sh $models)"
  bash "$here/models/fetch.sh" "$models"
fi

rm -rf "$work"
mkdir -p "$work" "$out"

# The installed tree, shared by both formats. $1: root, $2: PAM module dir, $3: unit dir,
# $4: where the "aloha" PAM service goes.
stage() {
  local root=$1 pamdir=$2 unitdir=$3 service=$4
  install -D -m 0755 -s "$bin/alohad" "$root/usr/sbin/alohad"
  install -D -m 0755 -s "$bin/aloha" "$root/usr/bin/aloha"
  install -D -m 0755 -s "$bin/aloha-presence" "$root/usr/libexec/aloha/aloha-presence"
  install -D -m 0644 -s "$bin/libpam_aloha.so" "$root$pamdir/pam_aloha.so"
  install -D -m 0644 "$here/pam/aloha" "$root$service"
  install -D -m 0644 "$here/aloha.toml" "$root/etc/aloha/aloha.toml"
  install -D -m 0644 "$here/systemd/alohad.service" "$root$unitdir/alohad.service"
  install -D -m 0644 "$here/systemd/alohad.socket" "$root$unitdir/alohad.socket"
  install -D -m 0644 "$here/systemd/aloha-presence.service" "$root$unitdir/aloha-presence.service"
  install -D -m 0644 "$here/dbus/org.aloha.Presence1.conf" \
    "$root/usr/share/dbus-1/system.d/org.aloha.Presence1.conf"
  install -D -m 0644 "$here/dbus/org.aloha.Presence1.service" \
    "$root/usr/share/dbus-1/system-services/org.aloha.Presence1.service"
  local page section
  for page in "$here"/man/*.[1-8]; do
    [ -f "$page" ] || die "no man pages in $here/man"
    section=${page##*.}
    install -d "$root/usr/share/man/man$section"
    gzip -9n <"$page" >"$root/usr/share/man/man$section/$(basename "$page").gz"
  done
  install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/aloha/README.md"
  install -D -m 0644 "$work/THIRD-PARTY" "$root/usr/share/doc/aloha/THIRD-PARTY"
}

stage_models() {
  local root=$1 f
  install -d "$root/usr/share/aloha/models"
  for f in blazeface_front_128.onnx shape_predictor_5_face_landmarks.dat \
    dlib_face_recognition_resnet_model_v1.onnx MODELS.md; do
    install -m 0644 "$models/$f" "$root/usr/share/aloha/models/$f"
  done
}

step "third-party licences"
# Every crate linked into the shipped binaries, with its licence expression.
(cd "$repo" && cargo tree --locked -e normal --prefix none --format '{p} {l}' \
  -p aloha -p aloha-helper -p aloha-presence -p pam_aloha) |
  sed 's/ (\*)$//; s/ (proc-macro)//; s| (/[^)]*)||' | sort -u >"$work/THIRD-PARTY.list"
{
  echo "Rust crates compiled into alohad, aloha, aloha-presence and pam_aloha.so, with their licences:"
  echo
  cat "$work/THIRD-PARTY.list"
} >"$work/THIRD-PARTY"

# ---------------------------------------------------------------------------------- .deb
step "aloha_${version}-${release}_${arch}.deb"
deb=$work/deb/aloha
# The password service in libpam's vendor directory, not a conffile in /etc/pam.d: `apt
# remove` then leaves /etc/pam.d exactly as it was (an admin's copy in /etc/pam.d wins).
stage "$deb" "/usr/lib/$multiarch/security" /lib/systemd/system /usr/lib/pam.d/aloha
install -D -m 0644 "$here/pam-configs/aloha" "$deb/usr/share/pam-configs/aloha"
install -D -m 0644 "$here/pam-configs/aloha-keep-password" "$deb/usr/share/pam-configs/aloha-keep-password"
install -D -m 0644 "$here/deb/copyright" "$deb/usr/share/doc/aloha/copyright"
# A Debian changelog entry for package $1 into $2.
changelog() {
  printf '%s (%s-%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
    "$1" "$version" "$release" "$version" "$maintainer" \
    "$(date -u -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}")" |
    gzip -9n >"$2"
}
changelog aloha "$deb/usr/share/doc/aloha/changelog.Debian.gz"
install -d "$deb/DEBIAN"
install -m 0755 "$here/deb/postinst" "$here/deb/prerm" "$here/deb/postrm" "$deb/DEBIAN/"
printf '/etc/aloha/aloha.toml\n' >"$deb/DEBIAN/conffiles"
# Library dependencies as dpkg-shlibdeps finds them, plus what is dlopened or run.
mkdir -p "$work/shlibs/debian"
printf 'Source: aloha\n\nPackage: aloha\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O --warnings=0 \
  -e"$deb/usr/sbin/alohad" -e"$deb/usr/bin/aloha" -e"$deb/usr/libexec/aloha/aloha-presence" \
  -e"$deb/usr/lib/$multiarch/security/pam_aloha.so" |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no library dependencies"
installed_size=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
cat >"$deb/DEBIAN/control" <<EOF
Package: aloha
Version: $version-$release
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, libtss2-tcti-device0, libpam-runtime (>= 1.0.1-6), libpam-modules, init-system-helpers (>= 1.52)
Recommends: aloha-face-models
Section: admin
Priority: optional
Description: Windows-Hello-style PIN and face sign-in
 Sign in to the desktop, the lock screen, sudo, su and polkit prompts with a
 PIN or your face instead of your password. alohad keeps each user's P-256
 key in the TPM (or a software vault where there is none); a PIN or a face
 match only releases it to sign a fresh challenge that pam_aloha verifies.
 The password always keeps working.
 .
 pam_aloha is added to the PAM stacks through pam-auth-update; users without
 an Aloha PIN see no change. Set one with "aloha pin set".
EOF
(cd "$deb" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$deb/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$deb" "$out/aloha_${version}-${release}_${arch}.deb" >/dev/null

step "aloha-face-models_${version}-${release}_all.deb"
mdeb=$work/deb/aloha-face-models
stage_models "$mdeb"
install -D -m 0644 "$here/deb/copyright-models" "$mdeb/usr/share/doc/aloha-face-models/copyright"
changelog aloha-face-models "$mdeb/usr/share/doc/aloha-face-models/changelog.Debian.gz"
install -d "$mdeb/DEBIAN"
cat >"$mdeb/DEBIAN/control" <<EOF
Package: aloha-face-models
Version: $version-$release
Architecture: all
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$mdeb" | cut -f1)
Enhances: aloha
Section: admin
Priority: optional
Description: face models for Aloha's face sign-in
 The face detector (BlazeFace), dlib's 5-point landmark model and dlib's face
 recognition network, converted for Aloha's face engine. Without them Aloha
 signs in with a PIN only; "aloha status" says face needs this package.
EOF
(cd "$mdeb" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$mdeb/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$mdeb" "$out/aloha-face-models_${version}-${release}_all.deb" >/dev/null

# ---------------------------------------------------------------------------------- .rpm
step "aloha-${version}-${release}.x86_64.rpm and aloha-face-models"
rpmroot=$work/rpm/root
stage "$rpmroot" /usr/lib64/security /usr/lib/systemd/system /etc/pam.d/aloha
stage_models "$rpmroot"
install -D -m 0644 "$repo/LICENSE-MIT" "$rpmroot/usr/share/licenses/aloha/LICENSE-MIT"
install -D -m 0644 "$repo/LICENSE-APACHE" "$rpmroot/usr/share/licenses/aloha/LICENSE-APACHE"
install -D -m 0644 "$models/LICENSE-blazeface" "$rpmroot/usr/share/licenses/aloha-face-models/LICENSE-blazeface"
install -D -m 0644 "$models/LICENSE-face_recognition_models" \
  "$rpmroot/usr/share/licenses/aloha-face-models/LICENSE-face_recognition_models"
install -D -m 0644 "$here/rpm/aloha-authselect.md" "$rpmroot/usr/share/doc/aloha/AUTHSELECT.md"
rpmbuild -bb --quiet \
  --define "_topdir $work/rpm/top" \
  --define "_rpmdir $out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "aloha_version $version" \
  --define "aloha_release $release" \
  --define "aloha_root $rpmroot" \
  --define "aloha_packager $maintainer" \
  --define "aloha_changelog_date $(date -u -d @"${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}" '+%a %b %d %Y')" \
  --define "__strip /bin/true" \
  --define "_build_id_links none" \
  "$here/rpm/aloha.spec"

step "built"
ls -l "$out"/*.deb "$out"/*.rpm >&2
