#![no_main]
#[path = "conversation.rs"]
mod conversation;
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| conversation::run(
    std::sync::Arc::new(fathom_protocols::mysql::MysqlParser),
    data
));
