"""Claims: the damage-report service (the lab's reference service), policy and compensation."""
