"""autoencoder."""
