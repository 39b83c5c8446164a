terraform {
  backend "atlas" {
    name = "legacy/other-env"
  }
}
