data "terraform_remote_state" "app" {
  backend = "atlas"
  config = {
    name    = "acme/app-prod"
    address = "https://tfe.example.com"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
