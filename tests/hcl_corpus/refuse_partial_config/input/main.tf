terraform {
  backend "atlas" {}
}
