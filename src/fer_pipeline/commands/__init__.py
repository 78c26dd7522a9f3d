"""The command lines: fer-predict, fer-serve, fer-train, fer-ui."""
