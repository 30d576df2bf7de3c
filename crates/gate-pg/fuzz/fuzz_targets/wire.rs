//! Arbitrary bytes through every decoder the gate runs on client and server input: framing
//! must stay within its bounds and decoding must fail cleanly, never panic.
#![no_main]

use countersign_gate_pg::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = wire::startup_len(data) {
        assert!(n <= wire::MAX_STARTUP_LEN && n <= data.len());
        let _ = wire::decode_startup(&data[..n]);
    }
    let mut rest = data;
    while let Ok(Some(n)) = wire::frame_len(rest, 4096) {
        assert!(n <= rest.len());
        let (frame, tail) = rest.split_at(n);
        let _ = wire::decode_frontend(frame);
        let _ = wire::decode_backend(frame);
        rest = tail;
    }
    let _ = wire::decode_sasl_initial(data);
    let _ = wire::decode_password(data);
});
