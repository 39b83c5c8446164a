terraform {
  backend "atlas" {
    name = "legacy/app"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
