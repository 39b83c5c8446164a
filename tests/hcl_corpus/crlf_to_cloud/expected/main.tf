terraform {
  required_version = ">= 1.1.0"

  cloud {
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
