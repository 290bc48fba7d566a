#!/usr/bin/env bash
# Check what packaging/build.sh built (target/packages, or $1): the man pages render without a
# warning, lintian finds no error or warning in the .debs, rpmlint (with Fedora's settings,
# packaging/rpm/rpmlint.toml) none in the .rpms, and both formats hold the files they must.
#   packaging/check.sh [OUTDIR]          needs: man-db, groff, lintian, rpm, rpmlint (scripts/deps)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$repo/target/packages}
failed=0
fail() { printf 'packaging/check.sh: %s\n' "$*" >&2; failed=1; }

"$here/man/check.sh" || fail "the man pages"

debs=("$out"/aloha_*.deb "$out"/aloha-face-models_*.deb)
rpms=("$out"/aloha-[0-9]*.rpm "$out"/aloha-face-models-[0-9]*.rpm)
for f in "${debs[@]}" "${rpms[@]}"; do
  [ -f "$f" ] || { echo "packaging/check.sh: $f is missing; run packaging/build.sh" >&2; exit 1; }
done

# lintian: errors and warnings fail; what is left is informational for a Debian upload.
# initial-upload-closes-no-bugs: these packages are not uploaded to Debian's archive.
lint=$(lintian --tag-display-limit 0 --suppress-tags initial-upload-closes-no-bugs "${debs[@]}" 2>&1 |
  grep -v '^running with root privileges' || true)
if printf '%s\n' "$lint" | grep -qE '^[EW]: '; then
  fail "lintian:"
  printf '%s\n' "$lint" >&2
fi

if ! rpmlint_out=$(rpmlint --config "$here/rpm/rpmlint.toml" "${rpms[@]}" 2>&1); then
  fail "rpmlint:"
  printf '%s\n' "$rpmlint_out" >&2
fi

# The files each must hold, where each distribution wants them.
need() {
  local list=$1 what=$2
  shift 2
  for path in "$@"; do
    printf '%s\n' "$list" | grep -qx "$path" || fail "$what lacks $path"
  done
}
need "$(dpkg-deb -c "${debs[0]}" | awk '{print substr($6, 2)}')" "${debs[0]##*/}" \
  /usr/sbin/alohad /usr/bin/aloha /usr/lib/x86_64-linux-gnu/security/pam_aloha.so \
  /usr/lib/pam.d/aloha /etc/aloha/aloha.toml /usr/share/pam-configs/aloha \
  /usr/share/pam-configs/aloha-keep-password /usr/libexec/aloha/aloha-presence \
  /lib/systemd/system/alohad.service /lib/systemd/system/alohad.socket \
  /lib/systemd/system/aloha-presence.service /usr/share/dbus-1/system.d/org.aloha.Presence1.conf \
  /usr/share/dbus-1/system-services/org.aloha.Presence1.service \
  /usr/share/man/man8/pam_aloha.8.gz /usr/share/doc/aloha/copyright
need "$(dpkg-deb -f "${debs[0]}" Depends | tr ',' '\n' | sed 's/^ *//; s/ .*//')" "${debs[0]##*/} Depends" \
  libpam0g libtss2-esys-3.0.2-0 libtss2-tcti-device0 libpam-runtime libdbus-1-3
need "$(dpkg-deb --ctrl-tarfile "${debs[0]}" | tar -xO ./conffiles)" "${debs[0]##*/} conffiles" \
  /etc/aloha/aloha.toml
# Nothing of the .deb in /etc/pam.d: `apt remove` must leave it byte for byte as it was.
if dpkg-deb -c "${debs[0]}" | grep -q ' \./etc/pam\.d/'; then
  fail "${debs[0]##*/} installs into /etc/pam.d"
fi
need "$(rpm -qlp "${rpms[0]}" 2>/dev/null)" "${rpms[0]##*/}" \
  /usr/sbin/alohad /usr/bin/aloha /usr/lib64/security/pam_aloha.so /etc/pam.d/aloha \
  /usr/lib/systemd/system/alohad.service /usr/lib/systemd/system/alohad.socket \
  /usr/libexec/aloha/aloha-presence /usr/lib/systemd/system/aloha-presence.service \
  /usr/share/dbus-1/system.d/org.aloha.Presence1.conf \
  /usr/share/dbus-1/system-services/org.aloha.Presence1.service \
  /usr/share/doc/aloha/AUTHSELECT.md
need "$(rpm -qpc "${rpms[0]}" 2>/dev/null)" "${rpms[0]##*/} %config" /etc/aloha/aloha.toml /etc/pam.d/aloha
need "$(rpm -qlp "${rpms[1]}" 2>/dev/null)" "${rpms[1]##*/}" \
  /usr/share/aloha/models/blazeface_front_128.onnx /usr/share/aloha/models/MODELS.md

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "packaging/check.sh: ${#debs[@]} .deb and ${#rpms[@]} .rpm OK (lintian, rpmlint, contents, man pages)"
