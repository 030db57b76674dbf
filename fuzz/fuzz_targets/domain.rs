//! The domain-XML reader (and, through it, the planner's input): a fuzzed libvirt domain XML.
#![no_main]
mod capped_alloc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virtio_migrate::fuzzing::domain_plan_bytes(data);
});
