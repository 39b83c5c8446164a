terraform {
  backend "atlas" {
    name = "acme/app-prod"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
