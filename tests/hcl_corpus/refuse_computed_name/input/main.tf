terraform {
  backend "atlas" {
    name = "legacy/${var.env}"
  }
}
