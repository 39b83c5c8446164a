# Équipe plateforme — 日本語のコメント
terraform {
  backend "atlas" {
    name = "acme/app-prod" # «legacy»
  }
}

variable "greeting" {
  default     = "héllo wörld ✓"
  description = "Grüße"
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}
