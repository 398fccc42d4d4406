"""The Faust app that decides: agents and tables that turn commands into events."""
