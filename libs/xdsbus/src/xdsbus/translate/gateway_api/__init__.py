"""Gateway API (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant) to the internal route
model; `build.translate_gateway_api` is the entry point."""
