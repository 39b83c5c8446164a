terraform {
  backend "remote" {
    hostname     = "tfe.example.com"
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
