# Operators point the backend at the private install here.
terraform {
  backend "atlas" {
    name    = "acme/app-prod"
    address = "https://tfe.example.com"
  }
}
