"""Configuration of every process, read from the environment in one place (`config.settings`)."""
