"""WasmPlugin modules: where their bytes come from (oci://, http(s)://, file://), how they are verified,
and the digest a watcher records when it resolves one (docs/wasm-modules.md)."""
