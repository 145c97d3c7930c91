;; Call-stack depth, for tests of the runner's stack limit.
;; - `recurse(n) -> i32`: recurses `n` calls deep (not a tail call: the addition happens after
;;   the call returns) and returns `n`.
;; - `forever() -> i32`: recurses with no end, until the runner's stack limit traps.
(module
  (func $recurse (export "recurse") (param $n i32) (result i32)
    (if (result i32) (i32.le_s (local.get $n) (i32.const 0))
      (then (i32.const 0))
      (else
        (i32.add
          (call $recurse (i32.sub (local.get $n) (i32.const 1)))
          (i32.const 1)))))
  (func $forever (export "forever") (result i32)
    (i32.add (call $forever) (i32.const 1))))
