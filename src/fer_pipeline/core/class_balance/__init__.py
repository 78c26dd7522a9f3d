"""class balance."""
