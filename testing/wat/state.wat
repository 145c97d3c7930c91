;; Instance state of every kind, for tests that a restored or fresh instance starts over:
;; a mutable global, a memory, and a funcref table written with `table.set` (reference types).
;; - `bump_global() -> i32`: increments the global (0 at instantiation) and returns it.
;; - `store(addr, value)` and `load(addr) -> i32`: `i32.store` and `i32.load` in the memory.
;; - `set_slot()`: stores a function in table slot 0 (null at instantiation).
;; - `slot_is_set() -> i32`: 1 if table slot 0 holds a function, else 0.
(module
  (global $g (mut i32) (i32.const 0))
  (memory 1)
  (table 1 funcref)
  (func $target)
  (elem declare func $target)
  (func (export "bump_global") (result i32)
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (global.get $g))
  (func (export "store") (param $addr i32) (param $value i32)
    (i32.store (local.get $addr) (local.get $value)))
  (func (export "load") (param $addr i32) (result i32)
    (i32.load (local.get $addr)))
  (func (export "set_slot")
    (table.set (i32.const 0) (ref.func $target)))
  (func (export "slot_is_set") (result i32)
    (i32.eqz (ref.is_null (table.get (i32.const 0))))))
