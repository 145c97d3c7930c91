;; Memory growth: one page to start with and no maximum, so that only the runner's own limit
;; stops `memory.grow`.
;; - `grow(pages) -> i32`: `memory.grow` by `pages`; the previous size in pages, or -1.
;; - `grow_until_fail() -> i32`: grows one page at a time until `memory.grow` returns -1; the size
;;   in pages reached.
(module
  (memory 1)
  (func (export "grow") (param $pages i32) (result i32)
    (memory.grow (local.get $pages)))
  (func (export "grow_until_fail") (result i32)
    (block $full
      (loop $more
        (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more)))
    (memory.size)))
