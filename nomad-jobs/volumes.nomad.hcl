# Host paths in a pot: a Nomad host volume mounted read-write, a host directory mounted
# read-only, a file copied in, an extra /etc/hosts line and the group's DNS settings. The task
# checks each from inside the jail and exits 0 only when all hold. Needs the agent's
# host_volume "rig-data" and allowed_host_paths = ["/var/db/rig"] (driver-config/dev.hcl).
job "volumes" {
  datacenters = ["dc1"]
  type        = "batch"

  group "volumes" {
    restart {
      attempts = 0
    }

    network {
      dns {
        servers  = ["10.192.0.2"]
        searches = ["rig.internal"]
      }
    }

    volume "data" {
      type   = "host"
      source = "rig-data"
    }

    task "check" {
      driver = "pot"

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      template {
        data        = "copied into the jail\n"
        destination = "local/motd"
      }

      template {
        destination = "local/check.sh"
        data        = <<-EOT
          fail=0
          check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
          check "host volume writable" 'echo "$NOMAD_ALLOC_ID" > /data/written-by-volumes-job'
          check "read-only mount readable" 'test -r /srv/site/index.html'
          check "read-only mount refuses writes" '! touch /srv/site/x 2>/dev/null'
          check "file copied" 'grep -q "copied into the jail" /etc/motd.rig'
          check "extra host" 'grep -q "10.192.0.20.*db.rig.internal" /etc/hosts'
          check "dns servers" 'grep -q "^nameserver 10.192.0.2" /etc/resolv.conf'
          check "dns searches" 'grep -q "^search rig.internal" /etc/resolv.conf'
          exit $fail
        EOT
      }

      config {
        image           = "http://127.0.0.1:8080/images"
        pot             = "demo"
        tag             = "1.0"
        mount_read_only = ["/var/db/rig/site:/srv/site"]
        copy            = ["local/motd:/etc/motd.rig"]
        extra_hosts     = ["db.rig.internal:10.192.0.20"]
        command         = "/bin/sh"
        args            = ["/local/check.sh"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
