"""What tests/ and bench/ share: a tiny model, free ports, stand-in phases on running workers, one polling helper,
servers, API clients, factories and history readers. Product code never imports it (pyproject.toml's contracts)."""
