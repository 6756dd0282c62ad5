#!/bin/sh
# Runs inside the debootstrapped root of the kubeforge Vagrant box (chroot, no network).
# Usage: configure.sh ROOT_FS_UUID
# Makes a CoreOS-like login (`core`, passwordless sudo), boots on a serial console with
# eth0/eth1 names, and leaves everything per-machine (machine-id, host keys, hostname)
# to first boot.
set -eu
uuid=$1

# The login user the installer expects (as on CoreOS). Vagrant logs in first with its
# insecure key, swaps in a key of its own, then the Vagrantfile authorizes kubeforge's key.
id core >/dev/null 2>&1 || useradd --create-home --uid 1000 --shell /bin/bash core
passwd -l core >/dev/null
install -d -m 0700 -o core -g core /home/core/.ssh
install -m 0600 -o core -g core /tmp/vagrant-insecure.pub /home/core/.ssh/authorized_keys
echo 'core ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/core
chmod 0440 /etc/sudoers.d/core
# Binaries the installer copies in (CoreOS has a read-only /usr).
install -d -m 0755 /opt/bin

cat > /etc/ssh/sshd_config.d/kubeforge.conf <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
MaxSessions 32
CONF
# Host keys must differ per VM: none in the box, generated at first boot.
rm -f /etc/ssh/ssh_host_*
install -d /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/kubeforge-hostkeys.conf <<'CONF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
CONF
install -d /etc/systemd/system.conf.d
printf '[Manager]\nDefaultTimeoutStopSec=10s\n' > /etc/systemd/system.conf.d/kubeforge.conf

# eth0 is the provider's management network (DHCP); Vagrant adds eth1 for the private IP.
cat > /etc/network/interfaces <<'CONF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
CONF
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > /etc/fstab

cat > /etc/default/grub <<'CONF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
CONF

# The node runtime starts only when the installer configures it.
systemctl disable containerd.service >/dev/null 2>&1 || true
systemctl enable ssh.service >/dev/null

# Per-machine identity comes at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/vagrant-insecure.pub
