;; A forged import signature: imports `env.host_add` as `(i64) -> i64` where the host defines
;; `(i32, i32) -> i32`, so instantiation (or linking) must fail. `go()` calls it.
(module
  (import "env" "host_add" (func $host_add (param i64) (result i64)))
  (func (export "go")
    (drop (call $host_add (i64.const 1)))))
