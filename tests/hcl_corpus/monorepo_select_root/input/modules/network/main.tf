variable "cidr" {
  default = "10.0.0.0/16"
}

resource "null_resource" "app" {
  triggers = {
    version = "1"
  }
}

output "cidr" {
  value = "${var.cidr}"
}
