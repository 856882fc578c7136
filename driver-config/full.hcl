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
  }
}
