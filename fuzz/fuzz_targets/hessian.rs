//! The bounded Hessian 2 reader: skip values, read strings and string maps.
#![no_main]
use fathom_protocols::dubbo::hessian::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data, 16);
    while r.peek().is_some() && r.skip().is_ok() {}
    let mut r = Reader::new(data, 16);
    let _ = r.string(64);
    let _ = r.int();
    let _ = r.string_map(64, |k, v| {
        let _ = (k.len(), v.len());
    });
    let _ = r.skip_object_class(64);
});
