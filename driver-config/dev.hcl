# The Vagrant rig's agent: a Nomad dev agent (server and client in one) on a host set up with
# `pot init`. Network settings come from pot.conf (the Vagrantfile sets POT_EXTIF there).
# The jobs in nomad-jobs/ run against it; tests/freebsd/e2e.sh checks them.
plugin_dir = "/usr/local/libexec/nomad/plugins"

client {
  # For nomad-jobs/volumes.nomad.hcl.
  host_volume "rig-data" {
    path      = "/var/db/rig/data"
    read_only = false
  }
}

plugin "nomad-pot-driver" {
  config {
    # The rig serves one image unsigned and one signed with this key: with the key configured
    # a signature that is present must verify, and require_signature = false still lets the
    # unsigned image run.
    signature_pubkeys = ["/usr/local/etc/pot/rig.pub"]
    require_signature = false
    # Host directories the rig's jobs mount: the host volume and the read-only site.
    allowed_host_paths = ["/var/db/rig"]
  }
}
