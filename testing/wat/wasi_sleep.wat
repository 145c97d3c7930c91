;; A WASI command that reads the monotonic clock, sleeps 60 s in `poll_oneoff` (one relative
;; clock subscription, userdata 7), reads the clock again, takes 16 random bytes, and writes to
;; stdout: the clock's advance (u64), the random bytes, and the event's userdata (u64).
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 300)))
    ;; subscription at 400: userdata 7, tag 0 (clock), id 1, timeout 60 s, precision 0, flags 0
    (i64.store (i32.const 400) (i64.const 7))
    (i32.store8 (i32.const 408) (i32.const 0))
    (i32.store (i32.const 416) (i32.const 1))
    (i64.store (i32.const 424) (i64.const 60000000000))
    (i64.store (i32.const 432) (i64.const 0))
    (i32.store16 (i32.const 440) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 400) (i32.const 500) (i32.const 1) (i32.const 600)))
    (drop (call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 308)))
    (i64.store (i32.const 340) (i64.sub (i64.load (i32.const 308)) (i64.load (i32.const 300))))
    (drop (call $random_get (i32.const 348) (i32.const 16)))
    (i64.store (i32.const 364) (i64.load (i32.const 500)))
    (i32.store (i32.const 0) (i32.const 340))
    (i32.store (i32.const 4) (i32.const 32))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
