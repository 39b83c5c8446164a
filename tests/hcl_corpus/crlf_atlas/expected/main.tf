# Windows checkout
terraform {
  backend "atlas" {
    name    = "acme/app-prod"
    address = "https://tfe.example.com"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
