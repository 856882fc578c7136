# Job options beyond the image and command: host directories, files, hosts, jail attributes,
# Nomad's user, dns and host volumes, and resource limits. Host paths outside the alloc dir
# need the operator's allowed_host_paths (here /srv/www), and devfs_ruleset needs
# allowed_attributes = ["devfs_ruleset"].
job "web" {
  datacenters = ["dc1"]

  group "web" {
    network {
      dns {
        servers  = ["10.0.0.53"]
        searches = ["service.consul"]
      }
    }

    volume "certs" {
      type      = "host"
      source    = "certs"
      read_only = true
    }

    task "nginx" {
      driver = "pot"
      user   = "www"

      volume_mount {
        volume      = "certs"
        destination = "/usr/local/etc/ssl"
        read_only   = true
      }

      config {
        image           = "https://potluck.honeyguide.net/nginx-nomad"
        pot             = "nginx-nomad-amd64-14_2"
        tag             = "1.0"
        command         = "nginx"
        args            = ["-g", "daemon off;"]
        mount_read_only = ["/srv/www:/usr/local/www/site"]
        mount           = ["local/cache:/var/cache/nginx"]
        copy            = ["local/nginx.conf:/usr/local/etc/nginx/nginx.conf"]
        extra_hosts     = ["db:10.0.0.20", "db6:2001:db8::20"]
        attributes      = ["devfs_ruleset:3", "exec_stop:/usr/local/sbin/nginx -s quit"]
        maxproc         = 200
        openfiles       = 4096
        swapuse         = "256M"
        writebps        = "20M"
        quota           = "2G"
      }

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 512
      }
    }
  }
}
