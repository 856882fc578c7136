# A batch job that prints to stdout and stderr and exits 3: the README demo runs exactly this
# task's config block (potctl demo substitutes the image URL of its simulated host), and the
# Vagrant rig serves the image it names at this URL.
job "demo" {
  datacenters = ["dc1"]
  type        = "batch"

  group "demo" {
    restart {
      attempts = 0
    }

    # The exit code 3 is the point: no second run on another allocation.
    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "hello" {
      driver = "pot"

      config {
        image   = "http://127.0.0.1:8080/images"
        pot     = "demo"
        tag     = "1.0"
        command = "/bin/sh"
        args    = ["-c", "echo hello from $NOMAD_TASK_NAME in a jail; ls /local /secrets /alloc >/dev/null && echo task dirs mounted; echo this goes to stderr >&2; exit 3"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
