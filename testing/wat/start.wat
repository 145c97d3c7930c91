;; A start function, which instantiation runs: it writes 42 to a global that `get() -> i32`
;; returns (0 if the start function did not run).
(module
  (global $g (mut i32) (i32.const 0))
  (func $start
    (global.set $g (i32.const 42)))
  (start $start)
  (func (export "get") (result i32)
    (global.get $g)))
