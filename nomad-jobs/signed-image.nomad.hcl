# A signed image: the rig exports its image a second time as tag 1.0-signed with
# `potctl export -S`, which adds demo_1.0-signed.xz.skein.sig. With signature_pubkeys set in the
# agent (driver-config/dev.hcl) the driver fetches the signature and refuses the image unless
# it verifies; with require_signature (the default once a key is set) unsigned images are
# refused too.
job "signed" {
  datacenters = ["dc1"]
  type        = "batch"

  group "signed" {
    restart {
      attempts = 0
    }

    task "signed" {
      driver = "pot"

      config {
        image   = "http://127.0.0.1:8080/images"
        pot     = "demo"
        tag     = "1.0-signed"
        command = "/bin/echo"
        args    = ["running from a signed image"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
