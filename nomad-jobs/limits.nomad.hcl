# Resource limits: Nomad's memory and, with cpu_hard_limit, cpu become rctl rules on the jail
# (memoryuse, pcpu), the task config adds rctl limits of its own and a ZFS quota. All of them are
# removed when the task stops. The task only sleeps, so the rules can be inspected from the host:
# `rctl | grep jail:limits_`.
job "limits" {
  datacenters = ["dc1"]
  type        = "service"

  group "limits" {
    task "limits" {
      driver = "pot"

      config {
        image      = "http://127.0.0.1:8080/images"
        pot        = "demo"
        tag        = "1.0"
        command    = "/bin/sh"
        args       = ["-c", "echo limits applied; exec sleep 3600"]
        maxproc    = 50
        openfiles  = 1024
        vmemoryuse = "1G"
        writebps   = "50M"
        quota      = "2G"
        # cpu below is a cap (rctl pcpu), not only the scheduler's reservation.
        cpu_hard_limit = true
      }

      resources {
        cpu        = 250
        memory     = 64
        memory_max = 128
      }
    }
  }
}
