#!/usr/bin/env bash
# Build the Debian 12 guest that tests/src/guest.rs boots under qemu: kernel, initrd and an
# ext4 root with systemd, a kernel TPM stack, vivid and v4l2loopback, and the 9p test agent.
# (The recipe and its measurements: /work/shared/notes/vm.md and tests/vm/README.md.)
#
#   tests/vm/build-image.sh   build if needed; print the image dir (and nothing else) on stdout
#
# The image lands in $ALOHA_VM_CACHE/<key>/ (default: target/vm/ in the repo), where <key>
# hashes this script, the files under tests/vm/guest/ and the apt sources it builds from;
# an image whose key exists is reused as it is. It is built in a temp dir beside it and
# renamed into place when complete, so a half-built image is never used. Downloaded .debs are
# kept in $ALOHA_VM_CACHE/debs/ for the next build. The build log is $ALOHA_VM_CACHE/build.log.
#
# Needs root and the host packages of scripts/deps (debootstrap, e2fsprogs, util-linux).
# Packages come from the mirror the host's own apt is configured with (apt-get indextargets),
# so no mirror is named here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ALOHA_VM_CACHE:-$repo/target/vm}
SUITE=bookworm

# What the guest has. --no-install-recommends throughout: only what is named and needed.
BASE_PACKAGES=(
  linux-image-amd64 systemd systemd-sysv udev kmod procps
  sudo passwd libpam-modules libpam-runtime
  tpm2-tools libtss2-tcti-device0 v4l-utils
)
# For the packaging and desktop tests to come: a system bus, polkit, a keyring. Installed in
# a step of their own so the build log shows what they cost (tests/vm/README.md).
DESKTOP_PACKAGES=(
  dbus dbus-user-session polkitd pkexec
  gnome-keyring libsecret-tools libpam-gnome-keyring
)
# Only while building v4l2loopback; purged again (the .ko stays).
BUILD_PACKAGES=(v4l2loopback-dkms)
# Loaded at boot by the initrd: the root disk.
INITRD_MODULES=(virtio_pci virtio_blk ext4)
# Module trees of the guest kernel that no test needs (hardware a qemu guest does not have).
TRIM_MODULES=(
  drivers/gpu drivers/net/wireless drivers/net/ethernet drivers/infiniband drivers/bluetooth
  drivers/staging drivers/isdn drivers/scsi drivers/ata drivers/usb drivers/hid drivers/iio
  drivers/media/usb drivers/media/pci drivers/media/dvb-frontends drivers/media/tuners
  drivers/media/i2c drivers/media/radio drivers/media/platform drivers/media/firewire
  drivers/media/spi drivers/media/mmc drivers/mmc drivers/mtd drivers/nfc drivers/thunderbolt
  net/wireless net/mac80211 net/bluetooth sound
)
ROOT_SIZE=3G

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot)"
for tool in debootstrap mkfs.ext4 flock findmnt apt-get sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/deps"
done

# The host's configured repositories for a release, from apt itself (deb822 or one-line
# sources alike): `apt-get indextargets` lists what `apt-get update` fetches.
# --no-release-info: from the configuration alone, also before the first `apt-get update`.
TARGETS=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(COMPONENT) $(REPO_URI)' 2>/dev/null || true)
repo_uri() { awk -v rel="$1" '$1 == rel && $2 == "main" { print $3; exit }' <<<"$TARGETS"; }
MIRROR=$(repo_uri "$SUITE")
[ -n "$MIRROR" ] || die "the host's apt sources have no '$SUITE main' entry (apt-get indextargets); \
add one, run apt-get update, and try again"
# A host that reaches its mirror through an apt proxy: debootstrap and the chroot's apt too.
PROXY=$(apt-config dump --format '%v' Acquire::http::Proxy 2>/dev/null || true)
if [ -n "$PROXY" ]; then export http_proxy=$PROXY; fi
UPDATES=$(repo_uri "$SUITE-updates")
SECURITY=$(repo_uri "$SUITE-security")

key=$(
  {
    cat "${BASH_SOURCE[0]}"
    (cd "$here/guest" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum)
    printf 'mirror %s\nupdates %s\nsecurity %s\n' "$MIRROR" "$UPDATES" "$SECURITY"
  } | sha256sum | cut -c1-16
)
out=$cache/$key
if [ -f "$out/root.ext4" ]; then
  printf '%s\n' "$out"
  exit 0
fi

mkdir -p "$cache/debs"
# One build at a time per cache (a second caller waits, then finds the image).
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/root.ext4" ]; then
  printf '%s\n' "$out"
  exit 0
fi

started=$(date +%s)
tmp=$(mktemp -d "$cache/.build-$key.XXXXXX")
root=$tmp/root
buildlog=$cache/build.log
: >"$buildlog"

# Unmount everything under the build dir (deepest first), then delete it, on every exit path.
# Nothing is deleted while anything is still mounted under it.
cleanup() {
  local rc=$? mp tries
  set +e
  for tries in 1 2 3; do
    mapfile -t mps < <(findmnt -rn -o TARGET | awk -v p="$tmp/" 'index($0, p) == 1' | sort -r)
    [ ${#mps[@]} -eq 0 ] && break
    for mp in "${mps[@]}"; do umount "$mp" 2>/dev/null || { [ "$tries" -eq 3 ] && umount -l "$mp"; }; done
  done
  if findmnt -rn -o TARGET | awk -v p="$tmp/" 'index($0, p) == 1' | grep -q .; then
    log "still mounted under $tmp; not deleting it"
  else
    rm -rf --one-file-system "$tmp"
  fi
  if [ "$rc" -ne 0 ]; then
    log "FAILED (exit $rc); the last lines of $buildlog:"
    tail -n 40 "$buildlog" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

step_start=$started
step() {
  step_start=$(date +%s)
  log "[$((step_start - started)) s] $*"
  printf '\n===== %s\n' "$*" >>"$buildlog"
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@" >>"$buildlog" 2>&1; }
apt_get() {
  # Reuse and keep the downloads: hard links between the cache and the chroot (same fs).
  find "$cache/debs" -maxdepth 1 -name '*.deb' -exec ln -f -t "$root/var/cache/apt/archives" {} +
  in_root apt-get -y -q --no-install-recommends "$@"
  find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec ln -f -t "$cache/debs" {} +
  in_root apt-get clean
}
size_of() { du -sx --block-size=1M "$root" | cut -f1; }

step "debootstrap $SUITE (minbase) from $MIRROR into $tmp"
debootstrap --variant=minbase --cache-dir="$cache/debs" "$SUITE" "$root" "$MIRROR" >>"$buildlog" 2>&1
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
# No services start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
{
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE"
  [ -z "$UPDATES" ] || printf 'deb %s %s-updates main\n' "$UPDATES" "$SUITE"
  [ -z "$SECURITY" ] || printf 'deb %s %s-security main\n' "$SECURITY" "$SUITE"
} >"$root/etc/apt/sources.list"
if [ -n "$PROXY" ]; then
  printf 'Acquire::http::Proxy "%s";\n' "$PROXY" >"$root/etc/apt/apt.conf.d/01proxy"
fi
in_root apt-get update -q
apt_get upgrade

# The initrd needs only the virtio disk and ext4; written before the kernel is installed.
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\n' >"$root/etc/initramfs-tools/conf.d/aloha-guest"
printf '%s\n' "${INITRD_MODULES[@]}" >>"$root/etc/initramfs-tools/modules"

step "base packages: ${BASE_PACKAGES[*]}"
apt_get install "${BASE_PACKAGES[@]}"
base_mb=$(size_of)

step "desktop packages: ${DESKTOP_PACKAGES[*]}"
apt_get install "${DESKTOP_PACKAGES[@]}"
desktop_mb=$(size_of)
desktop_s=$(($(date +%s) - step_start))

mapfile -t kernels < <(ls "$root/lib/modules")
[ ${#kernels[@]} -eq 1 ] || die "expected one guest kernel, found: ${kernels[*]}"
K=${kernels[0]}

step "v4l2loopback for $K (dkms in the chroot; only the .ko is kept)"
apt_get install "linux-headers-$K" "${BUILD_PACKAGES[@]}"
ver=$(chroot "$root" dpkg-query -W -f='${Version}' v4l2loopback-dkms | sed 's/-[^-]*$//')
ko=$(find "$root/lib/modules/$K" -name 'v4l2loopback.ko*' | head -n1)
if [ -z "$ko" ]; then
  in_root dkms install "v4l2loopback/$ver" -k "$K"
  ko=$(find "$root/lib/modules/$K" -name 'v4l2loopback.ko*' | head -n1)
fi
[ -n "$ko" ] || die "dkms built no v4l2loopback module for $K"
cp "$ko" "$tmp/${ko##*/}"
in_root apt-get purge -y -q --autoremove "${BUILD_PACKAGES[@]}" dkms "linux-headers-$K"
mkdir -p "$root/lib/modules/$K/updates"
mv "$tmp/${ko##*/}" "$root/lib/modules/$K/updates/"

step "configure: fstab, agent, hostname, trimming"
cat >"$root/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,errors=remount-ro 0 0
host0 /mnt/host 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0
EOF
mkdir -p "$root/mnt/host"
echo aloha-guest >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 aloha-guest\n::1 localhost ip6-localhost ip6-loopback\n' \
  >"$root/etc/hosts"
# A fixed machine id: an empty one would make every boot a "first boot".
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
echo >>"$root/etc/machine-id"
install -m 755 "$here/guest/aloha-agent" "$root/usr/local/sbin/aloha-agent"
install -m 644 "$here/guest/aloha-agent.service" "$root/etc/systemd/system/aloha-agent.service"
in_root systemctl enable aloha-agent.service
rm -f "$root/usr/sbin/policy-rc.d"
for t in "${TRIM_MODULES[@]}"; do rm -rf "$root/lib/modules/$K/kernel/$t"; done
in_root depmod -a "$K"
for m in vivid v4l2loopback tpm_crb 9p 9pnet_virtio virtio_blk; do
  in_root modprobe -S "$K" --show-depends "$m" || die "module $m of $K is missing after trimming"
done
rm -f "$root/etc/apt/apt.conf.d/01proxy"
rm -rf "$root"/usr/share/{doc,man,info,locale}/* "$root"/var/lib/apt/lists/* \
  "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
packages=$(chroot "$root" dpkg-query -W -f='${Package} ${Version}\n')

step "kernel, initrd and root.ext4"
mkdir "$tmp/out"
cp "$root/boot/vmlinuz-$K" "$tmp/out/kernel"
cp "$root/boot/initrd.img-$K" "$tmp/out/initrd"
umount "$root/dev/pts" "$root/sys" "$root/proc"
root_mb=$(size_of)
mkfs.ext4 -q -L aloha-root -d "$root" "$tmp/out/root.ext4" "$ROOT_SIZE" >>"$buildlog" 2>&1
rm -rf --one-file-system "$root"
elapsed=$(($(date +%s) - started))
{
  printf 'key %s\nkernel %s\nmirror %s\nbuilt %s\nbuild_seconds %s\n' \
    "$key" "$K" "$MIRROR" "$(date -u +%FT%TZ)" "$elapsed"
  printf 'root_mb %s\nbase_mb %s\ndesktop_mb %s\ndesktop_seconds %s\n' \
    "$root_mb" "$base_mb" "$((desktop_mb - base_mb))" "$desktop_s"
  printf '\n%s\n' "$packages"
} >"$tmp/out/recipe.txt"
mv -T "$tmp/out" "$out"
# A cache holds the current recipe's image only. A guest still running on an older one keeps
# it open (qemu holds the file; the space is freed when it exits).
for old in "$cache"/*/recipe.txt; do
  old=${old%/recipe.txt}
  [ "$old" = "$out" ] || rm -rf --one-file-system "$old"
done
log "built $out in $elapsed s (root ${root_mb} MB; desktop packages +$((desktop_mb - base_mb)) MB, ${desktop_s} s)"
printf '%s\n' "$out"
