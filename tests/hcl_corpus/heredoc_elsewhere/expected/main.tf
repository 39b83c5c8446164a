terraform {
  backend "atlas" {
    name = "acme/app-prod"
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
