terraform {
  backend "remote" {
    hostname     = "app.terraform.io"
    organization = "acme"

    workspaces {
      name = "app-prod"
    }
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
