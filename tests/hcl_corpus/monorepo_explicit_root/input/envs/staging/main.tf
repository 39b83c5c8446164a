terraform {
  backend "atlas" {
    name = "legacy/app-staging"
  }
}

module "network" {
  source = "../../modules/network"
}
