# Operators point the backend at the private install here.
terraform {
  backend "atlas" {
    name    = "legacy/app"
    address = "https://tfe.example.com"
  }
}
