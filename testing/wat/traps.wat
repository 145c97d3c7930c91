;; One export per kind of trap, for tests that the runner reports each as a trap (and which one):
;; - `unreachable()`: the `unreachable` instruction.
;; - `div_zero(x) -> i32`: `i32.div_s` of `x` by 0 (integer division by zero).
;; - `oob() -> i32`: an `i32.load` past the end of the one-page memory (out-of-bounds access).
;; - `int_overflow() -> i32`: `i32.div_s` of INT_MIN by -1 (integer overflow).
;; - `bad_convert() -> i32`: `i32.trunc_f32_s` of NaN (invalid conversion to integer).
;; - `indirect_null()`: `call_indirect` through a table slot holding no function.
;; - `indirect_type()`: `call_indirect` of a `(param i32) (result i32)` function as `() -> ()`
;;   (indirect call type mismatch).
(module
  (type $void (func))
  (type $unary (func (param i32) (result i32)))
  (memory 1 1)
  (table 2 funcref)
  ;; Slot 0 stays null; slot 1 holds $identity.
  (elem (i32.const 1) $identity)
  (func $identity (type $unary) (local.get 0))
  (func (export "unreachable")
    (unreachable))
  (func (export "div_zero") (param $x i32) (result i32)
    (i32.div_s (local.get $x) (i32.const 0)))
  (func (export "oob") (result i32)
    (i32.load (i32.const 65536)))
  (func (export "int_overflow") (result i32)
    (i32.div_s (i32.const 0x80000000) (i32.const -1)))
  (func (export "bad_convert") (result i32)
    (i32.trunc_f32_s (f32.const nan)))
  (func (export "indirect_null")
    (call_indirect (type $void) (i32.const 0)))
  (func (export "indirect_type")
    (call_indirect (type $void) (i32.const 1))))
