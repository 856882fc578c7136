# nginx in a public-bridge pot: Nomad allocates a host port, the driver publishes it to port 80
# of the pot (pf rdr, plus a relay for connections from the host itself), and Nomad's own
# service discovery checks it over HTTP. The image is the rig's (see the Vagrantfile): a
# FreeBSD base with nginx from pkg.
job "nginx" {
  datacenters = ["dc1"]
  type        = "service"

  group "web" {
    network {
      port "http" {
        to = 80
      }
    }

    service {
      name     = "nginx"
      provider = "nomad"
      port     = "http"

      check {
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "nginx" {
      driver       = "pot"
      kill_timeout = "20s"

      config {
        image        = "http://127.0.0.1:8080/images"
        pot          = "demo"
        tag          = "1.0"
        network_mode = "public-bridge"
        command      = "/usr/local/sbin/nginx"
        args         = ["-g", "daemon off;"]
        # Runs in the jail before the kill signal: nginx finishes its requests and exits.
        attributes = ["exec_stop:/usr/local/sbin/nginx -s quit"]
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
