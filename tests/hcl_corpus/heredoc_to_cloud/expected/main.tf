terraform {
  cloud {
    hostname     = "app.terraform.io"
    organization = "acme"

    workspaces {
      name = "app-prod"
    }
  }
}

output "howto" {
  value = <<EOT
To migrate, change
terraform {
  backend "atlas" {
    name = "legacy/app"
  }
}
EOT
}

resource "null_resource" "app" {
  triggers = {
    script = <<-SCRIPT
      backend "atlas" { name = "legacy/app" }
    SCRIPT
  }
}
