//! The qcow2 reader over a fuzzed image file with a fixed small raw backing: header, extensions,
//! L1/L2 tables, compressed clusters, subclusters, reads of the virtual disk.
#![no_main]
mod capped_alloc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virtio_migrate::fuzzing::qcow2_read(data);
});
