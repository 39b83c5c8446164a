terraform {
  backend "atlas" {
    name = "someone-else/app"
  }
}
