terraform {
	backend "atlas" {
		name = "legacy/app"
		address = "https://tfe.example.com"
	}
}

resource "null_resource" "app" {
	triggers = {
		version = "1"
	}
}
