terraform {
  backend "atlas" {
    name = "acme/app-staging"
  }
}

module "network" {
  source = "../../modules/network"
}
