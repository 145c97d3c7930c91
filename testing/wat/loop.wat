;; An export that never returns: `spin()` loops forever, for tests of interrupting (cancelling,
;; timing out) a running Wasm call.
(module
  (func (export "spin")
    (loop $forever
      (br $forever))))
