;; Imports that no host defines, for the runner's error naming them: `env.nonexistent () -> ()`
;; and `other.thing (i32) -> ()`, from a module other than `env`.
(module
  (import "env" "nonexistent" (func))
  (import "other" "thing" (func (param i32))))
