# Two tasks on a private bridge: "pong" answers on TCP port 7777 at a fixed address, "ping"
# connects to it every two seconds and logs the answer. The bridge "rignet" is pot's private
# bridge file <fs_root>/bridges/rignet (net=10.192.100.0/28, gateway=10.192.100.1), written by
# the Vagrantfile as `pot create-private-bridge` would.
job "private-bridge" {
  datacenters = ["dc1"]
  type        = "service"

  group "pingpong" {
    task "pong" {
      driver = "pot"

      config {
        image        = "http://127.0.0.1:8080/images"
        pot          = "demo"
        tag          = "1.0"
        network_mode = "private-bridge"
        bridge       = "rignet"
        ip           = "10.192.100.10"
        command      = "/bin/sh"
        args         = ["-c", "while :; do echo pong from $NOMAD_TASK_NAME | nc -l 7777 >/dev/null; done"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }

    task "ping" {
      driver = "pot"

      config {
        image        = "http://127.0.0.1:8080/images"
        pot          = "demo"
        tag          = "1.0"
        network_mode = "private-bridge"
        bridge       = "rignet"
        command      = "/bin/sh"
        args         = ["-c", "while :; do nc -w 2 10.192.100.10 7777 </dev/null; sleep 2; done"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
