terraform {
  required_version = ">= 1.1.0"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }

  cloud {
    hostname     = "app.terraform.io"
    organization = "acme"

    workspaces {
      name = "app-prod"
    }
  }
}
