#!/bin/sh
# Install kubeboot and its unit into an image tree (mkosi, Packer, debootstrap).
#   image/install-into-root.sh [--usr] ROOT [BINARY]
# BINARY defaults to the static release build (docs/building.md).
#
# Default: the unit goes to /etc/systemd/system and is enabled by the same
# symlink `systemctl enable` makes, so no systemd is needed at build time.
#
# --usr: everything under /usr only, for images whose /usr is read-only and
# whose /etc starts empty (Flatcar, Fedora CoreOS, systemd-sysext images):
#   /usr/bin/kubeboot
#   /usr/lib/systemd/system/kubeboot.service
#   /usr/lib/systemd/system-preset/50-kubeboot.preset   ("enable kubeboot.service")
# systemd applies presets on the first boot (empty /etc, `systemctl
# preset-all`), which enables the unit; nothing is written outside /usr.
set -eu
usr=no
if [ "${1:-}" = "--usr" ]; then
    usr=yes
    shift
fi
root=${1:?usage: install-into-root.sh [--usr] ROOT [BINARY]}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${2:-$here/target/x86_64-unknown-linux-musl/release/kubeboot}
[ -x "$bin" ] || { echo "no binary at $bin; build it (docs/building.md)" >&2; exit 2; }
install -D -m 0755 "$bin" "$root/usr/bin/kubeboot"
if [ "$usr" = yes ]; then
    install -D -m 0644 "$here/units/kubeboot.service" "$root/usr/lib/systemd/system/kubeboot.service"
    mkdir -p "$root/usr/lib/systemd/system-preset"
    printf 'enable kubeboot.service\n' > "$root/usr/lib/systemd/system-preset/50-kubeboot.preset"
    chmod 0644 "$root/usr/lib/systemd/system-preset/50-kubeboot.preset"
    echo "installed kubeboot into $root/usr (enabled by preset)"
    exit 0
fi
install -D -m 0644 "$here/units/kubeboot.service" "$root/etc/systemd/system/kubeboot.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../kubeboot.service "$root/etc/systemd/system/multi-user.target.wants/kubeboot.service"
mkdir -p "$root/var/lib/kubeboot"
echo "installed kubeboot into $root"
