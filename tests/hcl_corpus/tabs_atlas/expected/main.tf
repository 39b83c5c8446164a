terraform {
	backend "atlas" {
		name	= "acme/app-prod"
	}
}
