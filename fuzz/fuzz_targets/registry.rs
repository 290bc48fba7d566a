#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aloha_tests::fuzz::registry(data));
