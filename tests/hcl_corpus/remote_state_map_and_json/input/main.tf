data "terraform_remote_state" "app" {
  backend = "atlas"
  config = {
    name    = "legacy/app"
    address = "https://tfe.example.com"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
