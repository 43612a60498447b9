"""Gateway API conformance runner helpers: cases, manifests, an HTTP/2 client."""
