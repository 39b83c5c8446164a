# Production application.
terraform {
  required_version = ">= 0.11.0"

  # State lives in legacy TFE; see the wiki before touching this.
  backend "atlas" {
    # The environment name, ORG/ENV.
    name    = "acme/app-prod" # do not change by hand
    address = "https://tfe.example.com" /* private install */
  }
}

variable "region" {
  default = "eu-west-1" # ireland
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
