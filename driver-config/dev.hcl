# The Vagrant rig's agent: a Nomad dev agent (server and client in one) on a host set up with
# `pot init`. Network settings come from pot.conf (the Vagrantfile sets POT_EXTIF there).
# The jobs in nomad-jobs/ run against it; tests/freebsd/e2e.sh checks them. Every path named
# here must exist before the agent starts (tests/freebsd/provision.sh's host phase makes them):
# Nomad exits when the plugin's SetConfig fails, and SetConfig refuses a missing key file.
plugin_dir = "/usr/local/libexec/nomad/plugins"

server {
  # Without it Nomad ignores a task's memory_max, and nomad-jobs/limits.nomad.hcl's 128 MiB
  # memoryuse rule becomes its memory of 64 MiB. Read when a cluster first elects a leader,
  # that is at every start of a dev agent.
  default_scheduler_config {
    memory_oversubscription_enabled = true
  }
}

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
