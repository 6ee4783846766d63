"""The site control plane: failure detection by agreement, fast safe failover, routing, ops."""
