//! The registry reader over a fuzzed primary hive file (no logs): the verdict's lookups and a
//! bounded walk of every key and value.
#![no_main]
mod capped_alloc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virtio_migrate::fuzzing::hive_lookups(data, None);
});
