# Every agent option with its default. Options without a default here fall back to pot's
# configuration (/usr/local/etc/pot/pot.conf, then pot.default.conf), then to pot's defaults.
plugin_dir = "/usr/local/libexec/nomad/plugins"

plugin "nomad-pot-driver" {
  config {
    enabled           = true
    tool_path         = "/sbin:/bin:/usr/sbin:/usr/bin"
    zfs_root          = "zroot/pot"
    fs_root           = "/opt/pot"
    cache_dir         = "/var/cache/pot"
    tmp_dir           = "/tmp"
    state_dir         = "/var/db/nomad-pot-driver"
    lock_file         = "/tmp/pot-lock-file"
    pot_conf_dir      = "/usr/local/etc/pot"
    network           = "10.192.0.0/10"
    netmask           = "255.192.0.0"
    gateway           = "10.192.0.1"
    dns_ip            = "10.192.0.2"
    extif             = "em0"
    extra_extif       = []
    extif_addr        = ""
    vpn_extif         = ""
    vpn_networks      = []
    isolate_vnet_pots = false
    network_stack     = "ipv4"
    args_quote_compat = true
    # Host directories jobs may mount or copy from, besides their own alloc dir.
    allowed_host_paths = []
    # Jail attributes jobs may change from pot's secure defaults.
    allowed_attributes = []
    # Host directories file:// images may be read from; none: file:// images are refused.
    allowed_image_dirs = []
    image_max_size    = "64G"
    # image_cache_max = 10   # unset: imported images are never removed automatically
    # signify public keys for images' .xz.skein.sig (plus pot's POT_DEFAULT_SIGNATURE_PUBKEY);
    # with any key set, unsigned images are refused unless require_signature = false.
    # signature_pubkeys = ["/usr/local/etc/pot/release.pub"]
    # require_signature = true
    # CA certificates (PEM) trusted for https:// images besides the system trust store
    # (/etc/ssl/cert.pem, /etc/ssl/certs, or SSL_CERT_FILE / SSL_CERT_DIR).
    # image_ca_file = "/usr/local/etc/pot/images-ca.pem"
    # devd(8)'s client socket: how a jail reaching its memory limit is noticed (oom_killed);
    # "" turns that off.
    devd_socket       = "/var/run/devd.seqpacket.pipe"
    # Tasks without cpu_hard_limit: true makes Nomad's cpu an rctl pcpu cap, false keeps it a
    # reservation (FreeBSD has no CPU weights for jails).
    cpu_hard_limit    = false
  }
}
