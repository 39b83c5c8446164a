"""Executable runbook: migrate legacy Terraform Enterprise environments to new TFE workspaces.

Importing the package is cheap on purpose (no pandas, no requests): notebooks and the CLI import
only the modules they use.
"""

__version__ = "0.1.0"
