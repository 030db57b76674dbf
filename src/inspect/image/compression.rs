//! Decompression of one qcow2 compressed cluster (zlib raw deflate or zstd), with the output
//! bounded to exactly one cluster whatever the compressed stream claims.

use std::io::Read;

/// The compression method of an image's compressed clusters (header field `compression_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionType {
    /// Raw deflate (no zlib header), the default.
    Zlib,
    /// One zstd frame per cluster.
    Zstd,
}

impl CompressionType {
    /// The name qemu-img uses for it.
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// Decompress `input` into exactly `cluster_size` bytes.
///
/// Like qemu, the compressed data may be followed by unrelated bytes (the tail of the last
/// sector), so input left over once the cluster is full is ignored; a stream that ends before the
/// cluster is full, or that is malformed, is an error. Never produces more than `cluster_size`
/// bytes.
pub fn decompress_cluster(
    kind: CompressionType,
    input: &[u8],
    cluster_size: usize,
) -> Result<Vec<u8>, String> {
    match kind {
        CompressionType::Zlib => inflate(input, cluster_size),
        CompressionType::Zstd => unzstd(input, cluster_size),
    }
}

fn inflate(input: &[u8], cluster_size: usize) -> Result<Vec<u8>, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut out = vec![0u8; cluster_size];
    let mut state = Decompress::new(false);
    let mut produced = 0usize;
    let mut consumed = 0usize;
    // Each round either makes progress or stops; the output buffer bounds the total.
    loop {
        let (Some(rest_in), Some(rest_out)) = (input.get(consumed..), out.get_mut(produced..))
        else {
            return Err("deflate stream position out of range".into());
        };
        let before = (state.total_in(), state.total_out());
        let status = state
            .decompress(rest_in, rest_out, FlushDecompress::Finish)
            .map_err(|e| format!("invalid deflate data: {e}"))?;
        consumed = usize::try_from(state.total_in()).map_err(|_| "deflate input too large")?;
        produced = usize::try_from(state.total_out()).map_err(|_| "deflate output too large")?;
        if produced == cluster_size {
            return Ok(out);
        }
        let progressed = (state.total_in(), state.total_out()) != before;
        match status {
            Status::StreamEnd => {
                return Err(format!(
                    "deflate stream ends after {produced} bytes, short of the {cluster_size}-byte cluster"
                ))
            }
            _ if !progressed => {
                return Err(format!(
                    "deflate stream is truncated after {produced} of {cluster_size} bytes"
                ))
            }
            _ => {}
        }
    }
}

fn unzstd(input: &[u8], cluster_size: usize) -> Result<Vec<u8>, String> {
    let mut source = input;
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut source)
        .map_err(|e| format!("invalid zstd frame header: {e}"))?;
    let mut out = vec![0u8; cluster_size];
    decoder.read_exact(&mut out).map_err(|e| {
        format!("zstd frame does not decode to a full {cluster_size}-byte cluster: {e}")
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_exactly_one_cluster_and_ignores_trailing_bytes() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut z = deflate(&data);
        z.extend_from_slice(&[0xaa; 300]);
        assert_eq!(
            decompress_cluster(CompressionType::Zlib, &z, 4096).unwrap(),
            data
        );
    }

    #[test]
    fn output_is_bounded_to_the_cluster() {
        // 1 MiB of zeros compresses to ~1 KiB; only the first cluster is produced.
        let z = deflate(&vec![0u8; 1 << 20]);
        let out = decompress_cluster(CompressionType::Zlib, &z, 512).unwrap();
        assert_eq!(out.len(), 512);
    }

    #[test]
    fn short_truncated_and_garbage_streams_are_errors() {
        let z = deflate(&[7u8; 100]);
        assert!(decompress_cluster(CompressionType::Zlib, &z, 512).is_err());
        let z = deflate(&(0..4096u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        assert!(decompress_cluster(CompressionType::Zlib, &z[..z.len() / 2], 4096).is_err());
        assert!(decompress_cluster(CompressionType::Zlib, &[0xff; 64], 4096).is_err());
        assert!(decompress_cluster(CompressionType::Zlib, &[], 4096).is_err());
        assert!(decompress_cluster(CompressionType::Zstd, &[0xff; 64], 4096).is_err());
        assert!(decompress_cluster(CompressionType::Zstd, &[], 4096).is_err());
        // A valid zstd magic followed by garbage.
        let mut bad = vec![0x28, 0xb5, 0x2f, 0xfd];
        bad.extend_from_slice(&[0x5a; 60]);
        assert!(decompress_cluster(CompressionType::Zstd, &bad, 4096).is_err());
    }

    #[test]
    fn zstd_frames_decode_and_damaged_frames_never_panic() {
        let data: Vec<u8> = (0..16384u32).map(|i| (i / 64 * 13 + i % 7) as u8).collect();
        let frame = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            decompress_cluster(CompressionType::Zstd, &frame, 16384).unwrap(),
            data
        );
        assert!(decompress_cluster(CompressionType::Zstd, &frame, 32768).is_err());
        let z = deflate(&data);
        let mut x = 7u64;
        for _ in 0..400 {
            for (kind, good) in [(CompressionType::Zstd, &frame), (CompressionType::Zlib, &z)] {
                let mut bad = good.clone();
                for _ in 0..3 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let at = (x >> 20) as usize % bad.len();
                    bad[at] ^= 1 << ((x >> 8) % 8);
                }
                let cut = (x >> 40) as usize % (bad.len() + 1);
                if let Ok(out) = decompress_cluster(kind, &bad[..cut.max(bad.len() / 2)], 16384) {
                    assert_eq!(out.len(), 16384);
                }
            }
        }
    }
}
