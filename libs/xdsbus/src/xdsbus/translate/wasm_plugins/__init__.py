"""WasmPlugin translation (docs/wasm-plugins.md): the plugin model, its filter instances, their order in
the connection managers, and the per-route configuration that enables each instance where it applies."""
