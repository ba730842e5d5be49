"""custom_layers."""
