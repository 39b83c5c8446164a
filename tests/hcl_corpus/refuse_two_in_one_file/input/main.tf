terraform {
  backend "atlas" {
    name = "legacy/app"
  }
  backend "atlas" {
    name = "legacy/app2"
  }
}
