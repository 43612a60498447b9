;; A proxy-wasm (ABI 0.2.1) HTTP filter for the tests, compiled by the test suite with wasmtime's wat2wasm
;; (tests/support/wasm_modules.py). It reads its plugin configuration, a JSON object such as
;; {"header": "x-name", "value": "v"}, and adds that header to every response.
;;
;; One VM may hold several root contexts (Envoy shares a VM between plugin instances whose vm_config is
;; equal, and xdsbus gives each match rule its own instance), so the configuration is kept per root
;; context, and each HTTP context finds its root through the parent id given at creation.
;;
;; The JSON scan is deliberately small: it finds `"<key>"`, then `:`, then a string value, and takes the
;; bytes up to the next unescaped quote as they are (no unescaping). Keys other than header and value are
;; skipped. Missing header: the filter adds nothing.
;;
;; Memory: 1024 the key names, 4096 the parent table (context id mod 1024 -> root id), 8192 the root
;; table (64 entries of root id, header ptr, header len, value ptr, value len), from 16384 a bump heap
;; for the buffers the host copies the configuration into.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 16384))
  (global $found_ptr (mut i32) (i32.const 0))
  (global $found_len (mut i32) (i32.const 0))
  (global $roots (mut i32) (i32.const 0))

  (data (i32.const 1024) "header")
  (data (i32.const 1040) "value")
  (data (i32.const 1056) "add_header: configured")
  (data (i32.const 1088) "add_header: no \22header\22 in the configuration")

  (func $malloc (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (block $fits
      (br_if $fits (i32.le_u (local.get $end) (i32.shl (memory.size) (i32.const 16))))
      (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                                                           (i32.shl (memory.size) (i32.const 16)))
                                                  (i32.const 16))
                                       (i32.const 1)))
                  (i32.const -1))
        (then (unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))
  (export "malloc" (func $malloc))
  (export "proxy_on_memory_allocate" (func $malloc))

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
    (if (local.get $parent)
      (then (i32.store (i32.add (i32.const 4096)
                                (i32.shl (i32.and (local.get $id) (i32.const 1023)) (i32.const 2)))
                       (local.get $parent)))))

  ;; The root table entry of `root`, made when `create` and there is none yet; 0 when there is none.
  (func $root_entry (param $root i32) (param $create i32) (result i32)
    (local $i i32) (local $entry i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (global.get $roots)))
        (local.set $entry (i32.add (i32.const 8192) (i32.mul (local.get $i) (i32.const 20))))
        (if (i32.eq (i32.load (local.get $entry)) (local.get $root))
          (then (return (local.get $entry))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (if (i32.or (i32.eqz (local.get $create)) (i32.ge_u (global.get $roots) (i32.const 64)))
      (then (return (i32.const 0))))
    (local.set $entry (i32.add (i32.const 8192) (i32.mul (global.get $roots) (i32.const 20))))
    (global.set $roots (i32.add (global.get $roots) (i32.const 1)))
    (i32.store (local.get $entry) (local.get $root))
    (local.get $entry))

  (func $is_space (param $c i32) (result i32)
    (i32.or (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
            (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))

  ;; Finds the string value of `"<key>"` in buf[0..len); sets $found_ptr/$found_len, returns 1 if found.
  (func $find (param $buf i32) (param $len i32) (param $key i32) (param $key_len i32) (result i32)
    (local $i i32) (local $j i32) (local $k i32) (local $end i32) (local $match i32)
    (local.set $end (i32.add (local.get $buf) (local.get $len)))
    (local.set $i (local.get $buf))
    (block $fail
      (loop $scan
        (br_if $fail (i32.gt_u (i32.add (i32.add (local.get $i) (local.get $key_len)) (i32.const 2))
                               (local.get $end)))
        (local.set $match (i32.eq (i32.load8_u (local.get $i)) (i32.const 34)))
        (local.set $k (i32.const 0))
        (block $compared
          (loop $compare
            (br_if $compared (i32.eqz (local.get $match)))
            (br_if $compared (i32.ge_u (local.get $k) (local.get $key_len)))
            (local.set $match
              (i32.eq (i32.load8_u (i32.add (i32.add (local.get $i) (i32.const 1)) (local.get $k)))
                      (i32.load8_u (i32.add (local.get $key) (local.get $k)))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $compare)))
        (if (i32.and (local.get $match)
                     (i32.eq (i32.load8_u (i32.add (i32.add (local.get $i) (local.get $key_len)) (i32.const 1)))
                             (i32.const 34)))
          (then
            (local.set $j (i32.add (i32.add (local.get $i) (local.get $key_len)) (i32.const 2)))
            (block $colon
              (loop $ws1
                (br_if $colon (i32.ge_u (local.get $j) (local.get $end)))
                (br_if $colon (i32.eqz (call $is_space (i32.load8_u (local.get $j)))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $ws1)))
            (if (i32.and (i32.lt_u (local.get $j) (local.get $end))
                         (i32.eq (i32.load8_u (local.get $j)) (i32.const 58)))
              (then
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (block $value
                  (loop $ws2
                    (br_if $value (i32.ge_u (local.get $j) (local.get $end)))
                    (br_if $value (i32.eqz (call $is_space (i32.load8_u (local.get $j)))))
                    (local.set $j (i32.add (local.get $j) (i32.const 1)))
                    (br $ws2)))
                (if (i32.and (i32.lt_u (local.get $j) (local.get $end))
                             (i32.eq (i32.load8_u (local.get $j)) (i32.const 34)))
                  (then
                    (local.set $j (i32.add (local.get $j) (i32.const 1)))
                    (global.set $found_ptr (local.get $j))
                    (block $closed
                      (loop $chars
                        (br_if $fail (i32.ge_u (local.get $j) (local.get $end)))
                        (br_if $closed (i32.eq (i32.load8_u (local.get $j)) (i32.const 34)))
                        (if (i32.eq (i32.load8_u (local.get $j)) (i32.const 92))
                          (then (local.set $j (i32.add (local.get $j) (i32.const 1)))))
                        (local.set $j (i32.add (local.get $j) (i32.const 1)))
                        (br $chars)))
                    (global.set $found_len (i32.sub (local.get $j) (global.get $found_ptr)))
                    (return (i32.const 1))))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (i32.const 0))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $entry i32) (local $buf i32) (local $len i32)
    (local.set $entry (call $root_entry (local.get $root) (i32.const 1)))
    (if (i32.eqz (local.get $entry)) (then (return (i32.const 1))))
    (i64.store (i32.add (local.get $entry) (i32.const 4)) (i64.const 0))
    (i64.store (i32.add (local.get $entry) (i32.const 12)) (i64.const 0))
    (if (i32.eqz (local.get $size)) (then (return (i32.const 1))))
    (if (call $get_buffer_bytes (i32.const 7) (i32.const 0) (local.get $size) (i32.const 8) (i32.const 12))
      (then (return (i32.const 1))))
    (local.set $buf (i32.load (i32.const 8)))
    (local.set $len (i32.load (i32.const 12)))
    (if (i32.eqz (call $find (local.get $buf) (local.get $len) (i32.const 1024) (i32.const 6)))
      (then
        (drop (call $log (i32.const 3) (i32.const 1088) (i32.const 44)))
        (return (i32.const 1))))
    (i32.store (i32.add (local.get $entry) (i32.const 4)) (global.get $found_ptr))
    (i32.store (i32.add (local.get $entry) (i32.const 8)) (global.get $found_len))
    (if (call $find (local.get $buf) (local.get $len) (i32.const 1040) (i32.const 5))
      (then
        (i32.store (i32.add (local.get $entry) (i32.const 12)) (global.get $found_ptr))
        (i32.store (i32.add (local.get $entry) (i32.const 16)) (global.get $found_len))))
    (drop (call $log (i32.const 2) (i32.const 1056) (i32.const 22)))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))

  (func (export "proxy_on_response_headers") (param $id i32) (param i32 i32) (result i32)
    (local $entry i32)
    (local.set $entry
      (call $root_entry
        (i32.load (i32.add (i32.const 4096)
                           (i32.shl (i32.and (local.get $id) (i32.const 1023)) (i32.const 2))))
        (i32.const 0)))
    (if (i32.and (i32.ne (local.get $entry) (i32.const 0))
                 (i32.ne (i32.load (i32.add (local.get $entry) (i32.const 8))) (i32.const 0)))
      (then
        (drop (call $add_header_map_value
          (i32.const 2)
          (i32.load (i32.add (local.get $entry) (i32.const 4)))
          (i32.load (i32.add (local.get $entry) (i32.const 8)))
          (i32.load (i32.add (local.get $entry) (i32.const 12)))
          (i32.load (i32.add (local.get $entry) (i32.const 16)))))))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
