"""Higress's global options: the `higress-system/higress-config` ConfigMap (gzip, tracing, downstream and
upstream connections, x-real-ip, x-envoy headers) and the `higress-https` ConfigMap, parsed into a typed
model with Higress's defaults (docs/higress.md §5, docs/global-options.md), and what they become in
Envoy's connection managers, listeners and clusters."""
