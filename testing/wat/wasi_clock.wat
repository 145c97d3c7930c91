;; A WASI command that uses what the host answers: it writes to stdout the realtime clock (u64),
;; the monotonic clock's resolution (u64), 32 random bytes (two random_get calls of 16), the
;; monotonic clock before and after a poll_oneoff of one relative 1 ms clock subscription
;; (userdata 5) (2 x u64), the number of events and their userdata after a poll_oneoff of an
;; absolute subscription already due (userdata 6) (2 x u64), and the errnos of all calls (8
;; bytes): 8 + 8 + 32 + 16 + 16 + 8 = 88 bytes.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $subscribe (param $userdata i64) (param $timeout i64) (param $flags i32)
    (i64.store (i32.const 400) (local.get $userdata))
    (i32.store8 (i32.const 408) (i32.const 0))
    (i32.store (i32.const 416) (i32.const 1))
    (i64.store (i32.const 424) (local.get $timeout))
    (i64.store (i32.const 432) (i64.const 0))
    (i32.store16 (i32.const 440) (local.get $flags)))
  (func (export "_start")
    ;; output at 1000: realtime, resolution, random (32), t0, t1, nevents, userdata, errnos (8)
    (i32.store8 (i32.const 1080) (call $time (i32.const 0) (i64.const 0) (i32.const 1000)))
    (i32.store8 (i32.const 1081) (call $res (i32.const 1) (i32.const 1008)))
    (i32.store8 (i32.const 1082) (call $random (i32.const 1016) (i32.const 16)))
    (i32.store8 (i32.const 1083) (call $random (i32.const 1032) (i32.const 16)))
    (drop (call $time (i32.const 1) (i64.const 0) (i32.const 1048)))
    (call $subscribe (i64.const 5) (i64.const 1000000) (i32.const 0))
    (i32.store8 (i32.const 1084) (call $poll (i32.const 400) (i32.const 500) (i32.const 1) (i32.const 600)))
    (i32.store8 (i32.const 1085) (call $time (i32.const 1) (i64.const 0) (i32.const 1056)))
    ;; an absolute subscription at the monotonic time read before the sleep: already due
    (call $subscribe (i64.const 6) (i64.load (i32.const 1048)) (i32.const 1))
    (i32.store8 (i32.const 1086) (call $poll (i32.const 400) (i32.const 500) (i32.const 1) (i32.const 600)))
    (i64.store (i32.const 1064) (i64.extend_i32_u (i32.load (i32.const 600))))
    (i64.store (i32.const 1072) (i64.load (i32.const 500)))
    (i32.store8 (i32.const 1087) (i32.load16_u (i32.const 508)))
    (i32.store (i32.const 0) (i32.const 1000))
    (i32.store (i32.const 4) (i32.const 88))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
