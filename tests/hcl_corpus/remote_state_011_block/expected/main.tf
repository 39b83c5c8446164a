terraform {
  backend "atlas" {
    name = "legacy/consumer"
  }
}

# The network environment's outputs.
data "terraform_remote_state" "app" {
  backend = "atlas"

  config {
    name = "acme/app-prod" # the producer
  }
}

data "terraform_remote_state" "dns" {
  backend = "atlas"
  config {
    name = "legacy/dns"
  }
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
