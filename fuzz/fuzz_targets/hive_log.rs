//! The registry reader over a fixed dirty primary (fuzz/seeds/system-dirty.hive, whose last
//! change lives only in its log) with a fuzzed LOG1: log validation and replay, then the lookups.
#![no_main]
mod capped_alloc;
use libfuzzer_sys::fuzz_target;

const PRIMARY: &[u8] = include_bytes!("../seeds/system-dirty.hive");

fuzz_target!(|data: &[u8]| {
    virtio_migrate::fuzzing::hive_lookups(PRIMARY, Some(data));
});
