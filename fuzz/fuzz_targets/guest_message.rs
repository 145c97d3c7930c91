//! The host's dispatcher, `boundary::decode_guest_message`, exactly as the exit loop calls it:
//! the first byte picks the port (mostly the four message ports, sometimes another protocol port
//! or one outside the protocol), the rest is the message. It must agree with the decoder of the
//! port's type and reject the ports that carry no message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&port, message)) = data.split_first() {
        hyperlight_fuzz::decode::guest_message(
            hyperlight_fuzz::input::port_from_byte(port),
            message,
        );
    }
});
