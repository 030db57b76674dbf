//! The partition table reader (MBR and its extended chain, GPT, bare file systems) over a fuzzed
//! raw disk.
#![no_main]
mod capped_alloc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virtio_migrate::fuzzing::partitions(data);
});
