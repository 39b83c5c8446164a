terraform {
  backend "atlas" {
    name = "legacy/app"
  }
}
