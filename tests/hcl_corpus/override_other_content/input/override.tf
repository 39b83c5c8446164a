resource "null_resource" "app" {
  triggers = {
    version = "2"
  }
}
