;; FRPC, an invented binary RPC protocol, parsed by a Fathom WASM plugin written by hand in WAT (ABI version 1).
;;
;; Wire format: "FRPC", u8 kind (0 request, 1 response), u32 id (big-endian), u16 body length (big-endian),
;; body. A request body is the method name; a response body is a status byte (0 ok, 1 client error, 2 server
;; error) followed by an error text.
;;
;; Build: wasm-tools parse frpc.wat -o frpc.wasm (or wat2wasm); the host also loads the text form directly
;; when wasmtime's `wat` feature is on. The `;; @...` comments mark where the tests of fathom-plugin-wasm
;; insert hostile code.
(module
  (memory (export "memory") 2)
  (func (export "fathom_abi_version") (result i32) (i32.const 1)) ;; @version
  ;; One input buffer at 1024, grown to fit; the result record lives at 16..88.
  (func (export "fathom_alloc") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.lt_s (memory.grow (local.get $need)) (i32.const 0))
        (then (return (i32.const -1))))))
    (i32.const 1024))
  (func $magic (param $p i32) (param $n i32) (result i32)
    (if (i32.lt_u (local.get $n) (i32.const 4)) (then (return (i32.const 0))))
    (i32.eq (i32.load (local.get $p)) (i32.const 0x43505246)))
  (func (export "fathom_probe") (param $p i32) (param $n i32) (param $dir i32) (result i32)
    ;; @probe
    (if (result i32) (call $magic (local.get $p) (local.get $n))
      (then (i32.const 2)) (else (i32.const 0))))
  (func (export "fathom_parse") (param $p i32) (param $n i32) (param $dir i32) (result i32)
    (local $blen i32) (local $total i32) (local $kind i32) (local $st i32)
    ;; @parse
    (if (i32.lt_u (local.get $n) (i32.const 4)) (then (return (i32.const 0))))
    (if (i32.eqz (call $magic (local.get $p) (local.get $n)))
      (then
        ;; After a gap (dir bit 2): skip one byte and look again; otherwise this is not FRPC.
        (if (i32.and (local.get $dir) (i32.const 2))
          (then
            (memory.fill (i32.const 16) (i32.const 0) (i32.const 72))
            (i32.store (i32.const 16) (i32.const 1))
            (i32.store8 (i32.const 20) (i32.const 4))
            (return (i32.const 16))))
        (return (i32.const -1))))
    (if (i32.lt_u (local.get $n) (i32.const 11)) (then (return (i32.const 0))))
    (local.set $blen (i32.or
      (i32.shl (i32.load8_u offset=9 (local.get $p)) (i32.const 8))
      (i32.load8_u offset=10 (local.get $p))))
    (local.set $total (i32.add (local.get $blen) (i32.const 11)))
    (if (i32.lt_u (local.get $n) (local.get $total)) (then (return (i32.const 0))))
    (local.set $kind (i32.load8_u offset=4 (local.get $p)))
    (if (i32.gt_u (local.get $kind) (i32.const 1)) (then (return (i32.const -1))))
    (memory.fill (i32.const 16) (i32.const 0) (i32.const 72))
    (i32.store (i32.const 16) (local.get $total))
    (i32.store8 (i32.const 20) (local.get $kind))
    (i32.store8 (i32.const 22) (i32.const 1))
    (i32.store (i32.const 24) (i32.or
      (i32.or (i32.shl (i32.load8_u offset=5 (local.get $p)) (i32.const 24))
              (i32.shl (i32.load8_u offset=6 (local.get $p)) (i32.const 16)))
      (i32.or (i32.shl (i32.load8_u offset=7 (local.get $p)) (i32.const 8))
              (i32.load8_u offset=8 (local.get $p)))))
    (if (i32.eqz (local.get $kind))
      (then
        (i32.store (i32.const 40) (i32.add (local.get $p) (i32.const 11)))
        (i32.store (i32.const 44) (local.get $blen)))
      (else
        (if (i32.eqz (local.get $blen)) (then (return (i32.const -1))))
        (local.set $st (i32.load8_u offset=11 (local.get $p)))
        (if (i32.gt_u (local.get $st) (i32.const 2)) (then (return (i32.const -1))))
        (i32.store8 (i32.const 21) (i32.add (local.get $st) (i32.const 1)))
        (i32.store8 (i32.const 22) (i32.const 3))
        (i64.store (i32.const 32) (i64.extend_i32_u (local.get $st)))
        (if (local.get $st)
          (then
            (i32.store (i32.const 72) (i32.add (local.get $p) (i32.const 12)))
            (i32.store (i32.const 76) (i32.sub (local.get $blen) (i32.const 1)))))))
    (i32.const 16))
)
