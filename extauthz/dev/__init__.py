"""Development helpers: the demo upstream, the Envoy config renderer and ``make run``'s stack."""
