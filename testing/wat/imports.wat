;; The smallest module with a host function: `call_add(a, b) -> i32` returns what the import
;; `env.host_add(a, b)` returns.
(module
  (import "env" "host_add" (func $host_add (param i32 i32) (result i32)))
  (func (export "call_add") (param $a i32) (param $b i32) (result i32)
    (call $host_add (local.get $a) (local.get $b))))
