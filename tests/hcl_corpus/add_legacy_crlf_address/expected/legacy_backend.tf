terraform {
  backend "atlas" {
    name    = "legacy/app"
    address = "https://tfe.example.com"
  }
}
