# A job written for the Go nomad-pot-driver, in its README's style: `port_map` instead of a
# port's `to`, the whole command line in `command`, and an argument quoted for pot's shell
# (`'daemon off;'`: args_quote_compat strips the quotes). It runs unchanged; the image location
# is the rig's, and the service uses Nomad's own discovery because the rig runs no Consul.
job "example" {
  datacenters = ["dc1"]
  type        = "service"

  group "group1" {
    count = 1

    network {
      port "http" {}
    }

    task "task1" {
      driver = "pot"

      service {
        tags     = ["pot-jail", "metrics"]
        name     = "pot-example"
        port     = "http"
        provider = "nomad"

        check {
          type     = "tcp"
          name     = "http"
          interval = "5s"
          timeout  = "2s"
        }
      }

      config {
        image    = "http://127.0.0.1:8080/images"
        pot      = "demo"
        tag      = "1.0"
        command  = "nginx"
        args     = ["-g", "'daemon off;'"]
        port_map = { http = "80" }
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
