# Équipe plateforme — 日本語のコメント
terraform {
  backend "atlas" {
    name = "legacy/app" # «legacy»
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
