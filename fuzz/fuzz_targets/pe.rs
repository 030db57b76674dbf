//! The driver-file reader over a fuzzed file: MS-DOS/PE/COFF/optional headers, section table,
//! the attribute certificate table and its PKCS #7 signer (nested signatures), the RT_VERSION
//! resource path and VS_FIXEDFILEINFO; the read budget must hold.
#![no_main]
mod capped_alloc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virtio_migrate::fuzzing::pe_driver(data);
});
