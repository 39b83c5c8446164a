terraform {
  backend "remote" {
    hostname     = "app.terraform.io"
    organization = "acme"

    workspaces {
      name = "app-prod"
    }
  }
}

module "network" {
  source = "../../modules/network"
}
