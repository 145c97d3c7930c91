;; An import of a kind the runner does not support: a memory, `env.memory`, rather than a
;; function.
(module
  (import "env" "memory" (memory 1)))
