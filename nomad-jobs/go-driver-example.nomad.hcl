# A job written for the Go nomad-pot-driver: the same config keys work unchanged.
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

      config {
        image        = "https://potluck.honeyguide.net/nginx-nomad"
        pot          = "nginx-nomad-amd64-13_1"
        tag          = "1.1.13"
        command      = "nginx"
        args         = ["-g", "'daemon off;'"]
        network_mode = "host"
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
