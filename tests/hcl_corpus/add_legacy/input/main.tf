terraform {
  required_version = ">= 0.11.0"
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
