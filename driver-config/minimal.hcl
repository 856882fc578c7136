# Enough on a host already set up with `pot init`: the driver reads pot's own
# pot.default.conf and pot.conf for everything else.
plugin_dir = "/usr/local/libexec/nomad/plugins"

plugin "nomad-pot-driver" {}
