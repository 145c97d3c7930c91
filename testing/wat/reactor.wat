;; A WASI-style reactor: an `_initialize` export, which a runner calls once after instantiation,
;; writes 7 to a global that `get() -> i32` returns (0 if `_initialize` did not run).
(module
  (global $g (mut i32) (i32.const 0))
  (func (export "_initialize")
    (global.set $g (i32.const 7)))
  (func (export "get") (result i32)
    (global.get $g)))
