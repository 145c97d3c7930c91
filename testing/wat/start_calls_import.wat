;; A start function that calls a host function, `env.host_add(1, 2)`: instantiation itself calls
;; the host. `get() -> i32` returns what the call returned.
(module
  (import "env" "host_add" (func $host_add (param i32 i32) (result i32)))
  (global $g (mut i32) (i32.const 0))
  (func $start
    (global.set $g (call $host_add (i32.const 1) (i32.const 2))))
  (start $start)
  (func (export "get") (result i32)
    (global.get $g)))
