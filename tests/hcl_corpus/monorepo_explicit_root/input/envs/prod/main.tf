terraform {
  backend "atlas" {
    name = "legacy/app-prod"
  }
}

module "network" {
  source = "../../modules/network"
}
