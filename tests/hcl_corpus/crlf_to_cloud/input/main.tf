terraform {
  required_version = ">= 1.1.0"

  backend "atlas" {
    name = "legacy/app"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
