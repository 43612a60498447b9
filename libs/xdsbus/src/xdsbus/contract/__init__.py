"""The contract layer: names and records every other layer shares, importing nothing above it.

Type URLs, resource keys and bodies, change lists, status records and their one KV key scheme, registry
hostnames and the protobuf wire helpers that define a resource body's bytes. See docs/architecture.md
("Where the code lives") for the layer order the import contract in tests/test_layers.py enforces.
"""
