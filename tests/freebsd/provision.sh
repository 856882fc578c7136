#!/bin/sh
# Provisions the FreeBSD rig (see the Vagrantfile), one phase per argument, as root:
#
#   provision.sh host     packages, a ZFS pool on the VM's second disk, racct at boot, pf with
#                         pot's anchors, pot init, the private bridge "rignet", the signing key
#                         and the directories driver-config/dev.hcl names, rc.conf for nomad
#                         and nginx (racct needs a reboot: `vagrant reload` after `vagrant up`)
#   provision.sh driver   install the plugin, potctl and their man pages from the release
#                         archive in dist/ (packaging/release.sh), or with RIG_BUILD=source
#                         build this tree with cargo; install the agent config
#                         (driver-config/dev.hcl), start pf and Nomad (dev mode)
#   provision.sh image    build the pot "demo" (FreeBSD base + nginx), export it with potctl
#                         (tag 1.0, and 1.0-signed with the rig's signify key) and serve it on :8080
#
# Every phase can run again: what exists is kept. Everything the agent config names exists
# before the driver phase starts Nomad: at start Nomad hands the config to the plugin's
# SetConfig and exits when it fails, and SetConfig refuses a missing key file.
set -eu

export CARGO_HOME=/root/.cargo RUSTUP_HOME=/root/.rustup
export PATH=$CARGO_HOME/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
REPO=${REPO:-/vagrant}
# archive (the default): dist/ holds packaging/release.sh's archive; source: cargo in the VM.
RIG_BUILD=${RIG_BUILD:-archive}
POT_CONF=/usr/local/etc/pot/pot.conf
IMAGES=/usr/local/www/images
RIG_KEY=/usr/local/etc/pot/rig

step() { echo "==> $*"; }

# pot.conf is sourced by pot's sh and parsed line by line by potnet, which does not strip
# quotes: write KEY=value bare, replacing an earlier value.
set_pot_conf() {
    touch "$POT_CONF"
    grep -v "^$1=" "$POT_CONF" > "$POT_CONF.new" || true
    echo "$1=$2" >> "$POT_CONF.new"
    mv "$POT_CONF.new" "$POT_CONF"
}

phase_host() {
    step "packages"
    export ASSUME_ALWAYS_YES=yes
    # What a node needs (pot brings potnet), then what the rig adds: the release manifests
    # `pot create -b` checks, nginx to serve images, signify for a key pair, the e2e script's
    # tools, and for RIG_BUILD=source a Rust toolchain.
    pkg install -y pot nomad
    pkg install -y freebsd-release-manifests nginx signify jq curl bash
    # pkg's quarterly rust can be older than the crate's rust-version (1.88, edition 2024).
    if [ "$RIG_BUILD" = source ] && [ ! -x "$CARGO_HOME/bin/cargo" ]; then
        pkg install -y rustup-init
        rustup-init -y --profile minimal --default-toolchain stable
    fi

    step "ZFS pool zroot on the second disk (the Vagrantfile's config.vm.disk)"
    sysrc zfs_enable=YES
    kldload -n zfs
    if ! zpool list zroot >/dev/null 2>&1; then
        # The boot disk is partitioned; the pool's disk is the one gpart knows nothing about.
        disk=
        for d in $(sysctl -n kern.disks); do
            case $d in cd* | md*) continue ;; esac
            gpart show "$d" >/dev/null 2>&1 || { disk=$d; break; }
        done
        if [ -z "$disk" ]; then
            echo "no blank disk for the pool (kern.disks: $(sysctl -n kern.disks)): the" \
                "Vagrantfile's config.vm.disk needs Vagrant >= 2.4.0 (before: VAGRANT_EXPERIMENTAL=disks)" \
                "and the VirtualBox or VMware provider" >&2
            exit 1
        fi
        zpool create zroot "/dev/$disk"
    fi

    step "racct at boot (rctl limits and stats; takes effect after the reboot)"
    if ! grep -q '^kern.racct.enable=1' /boot/loader.conf; then
        echo 'kern.racct.enable=1' >> /boot/loader.conf
    fi

    step "pot.conf: the external interface is the one holding the default route"
    extif=$(route -n get default | awk '/interface:/ { print $2 }')
    set_pot_conf POT_EXTIF "$extif"

    step "pf with pot's anchors, pot init"
    [ -s /etc/pf.conf ] || echo '# nomad-pot-driver rig: pot init puts its anchors above' > /etc/pf.conf
    sysrc pf_enable=YES pf_rules=/etc/pf.conf
    # pot's POT_GROUP owns its root directory; pot refuses to run without it.
    pw groupshow pot >/dev/null 2>&1 || pw groupadd pot
    # Creates zroot/pot and its datasets and adds `nat-anchor pot-nat` and
    # `rdr-anchor "pot-rdr/*"` to /etc/pf.conf; both steps are skipped when already done.
    pot init -p /etc/pf.conf
    grep -q '^nat-anchor pot-nat' /etc/pf.conf && grep -q '^rdr-anchor "pot-rdr/\*"' /etc/pf.conf

    step "private bridge rignet (nomad-jobs/private-bridge.nomad.hcl)"
    # The file `pot create-private-bridge -B rignet -S 14` writes, with a fixed network so the
    # job can name its server's address.
    fs_root=$(pot config -q -g fs_root)
    if [ ! -f "$fs_root/bridges/rignet" ]; then
        mkdir -p "$fs_root/bridges"
        printf 'net=10.192.100.0/28\ngateway=10.192.100.1\nname=rignet\n' > "$fs_root/bridges/rignet"
    fi

    step "what driver-config/dev.hcl names: plugin_dir, the signing key, the mounted directories"
    install -d /usr/local/libexec/nomad/plugins
    if [ ! -f "$RIG_KEY.sec" ]; then
        signify -G -n -p /usr/local/etc/pot/rig.pub -s /usr/local/etc/pot/rig.sec
        chmod 0600 "$RIG_KEY.sec"
    fi
    install -d /var/db/rig/data /var/db/rig/site
    echo 'rig site' > /var/db/rig/site/index.html

    step "rc.conf: Nomad as root in dev mode with the driver's config, nginx for the images"
    sysrc nomad_enable=YES nomad_user=root nomad_group=wheel
    sysrc nomad_env="PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/sbin:/bin"
    # -dev fingerprints the network on `lo`, which FreeBSD calls lo0: name the real interface.
    sysrc nomad_args="-dev -bind=0.0.0.0 -network-interface=$extif -config=/usr/local/etc/nomad/pot-driver.hcl"
    # The rc script runs Nomad under daemon -f, which discards its output; with nomad_debug it
    # goes to syslog (/var/log/messages) instead.
    sysrc nomad_debug=YES
    sysrc nginx_enable=YES
}

# The crate's version, from Cargo.toml's [package] section.
crate_version() {
    sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1
}

phase_driver() {
    cd "$REPO"
    # The release archive's layout in a scratch directory, from dist/ or from a build here.
    stage=$(mktemp -d /tmp/rig-release.XXXXXX)
    if [ "$RIG_BUILD" = source ]; then
        step "build the driver (cargo build --release)"
        cargo build --release --locked --bin nomad-pot-driver --bin potctl
        cp target/release/nomad-pot-driver target/release/potctl packaging/man/*.8 "$stage"
    else
        archive=nomad-pot-driver_$(crate_version)_freebsd_amd64.tar.gz
        step "the release archive dist/$archive"
        if [ ! -f "dist/$archive" ]; then
            echo "dist/$archive is missing: run packaging/release.sh $(crate_version) on the" \
                "host before provisioning, or provision with RIG_BUILD=source" >&2
            exit 1
        fi
        want=$(awk -v f="$archive" '$2 == f { print $1 }' dist/SHA256SUMS)
        [ "$(sha256 -q "dist/$archive")" = "$want" ] ||
            { echo "dist/$archive does not match dist/SHA256SUMS" >&2; exit 1; }
        tar -xzf "dist/$archive" -C "$stage" --strip-components 1
    fi

    step "install into plugin_dir, potctl into /usr/local/bin, the man pages, the agent config"
    cd "$stage"
    install -m 0755 nomad-pot-driver /usr/local/libexec/nomad/plugins/
    install -m 0755 potctl /usr/local/bin/
    install -m 0444 potctl.8 nomad-pot-driver.8 /usr/local/share/man/man8/
    cd "$REPO"
    rm -rf "$stage"
    install -d /usr/local/etc/nomad
    install -m 0644 driver-config/dev.hcl /usr/local/etc/nomad/pot-driver.hcl

    step "pf and Nomad"
    service pf status >/dev/null 2>&1 || service pf start
    service nomad restart
    i=0
    until nomad node status -self >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 60 ]; then
            echo "Nomad did not come up; its last output (syslog):" >&2
            grep -w nomad /var/log/messages | tail -n 40 >&2
            exit 1
        fi
        sleep 1
    done
}

phase_image() {
    release=$(freebsd-version -u | sed 's/-.*//')
    jails=$(pot config -q -g pot_prefix)
    dataset="$(pot config -q -g zfs_root)/jails/demo"

    if ! pot info -p demo >/dev/null 2>&1; then
        step "pot demo: a single-dataset pot from the FreeBSD $release base"
        pot create -p demo -t single -b "$release" -N inherit
    fi
    step "nginx into the pot (pkg -r installs into its root with the host's repositories)"
    ASSUME_ALWAYS_YES=yes pkg -r "$jails/demo/m" install -y nginx

    if [ -z "$(zfs list -H -t snapshot -o name -d 1 "$dataset")" ]; then
        step "snapshot"
        pot snapshot -p demo
    fi

    install -d "$IMAGES"
    if [ ! -f "$IMAGES/demo_1.0.xz.skein" ]; then
        step "export demo_1.0 with potctl"
        potctl export -p demo -t 1.0 -D "$IMAGES"
    fi
    if [ ! -f "$IMAGES/demo_1.0-signed.xz.skein.sig" ]; then
        step "export demo_1.0-signed, signed with the key the host phase made"
        potctl export -p demo -t 1.0-signed -D "$IMAGES" -S "$RIG_KEY.sec"
    fi

    step "serve $IMAGES at http://127.0.0.1:8080/images"
    cat > /usr/local/etc/nginx/nginx.conf <<'EOF'
# Written by tests/freebsd/provision.sh: the rig's image server.
worker_processes 1;
events {
    worker_connections 64;
}
http {
    include mime.types;
    server {
        listen 127.0.0.1:8080;
        root /usr/local/www;
        autoindex on;
    }
}
EOF
    service nginx restart
    fetch -qo /dev/null http://127.0.0.1:8080/images/demo_1.0.xz.skein
}

[ $# -gt 0 ] || { echo "usage: $0 host|driver|image..." >&2; exit 2; }
for phase in "$@"; do
    case $phase in
    host) phase_host ;;
    driver) phase_driver ;;
    image) phase_image ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
    esac
done
