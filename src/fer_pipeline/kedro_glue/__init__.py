"""kedro glue."""
