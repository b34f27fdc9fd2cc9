"""`wlops mcp`: the Model Context Protocol over the same services as the HTTP API, with the caller's token or API key
and the same scopes (stdio, or streamable HTTP)."""
