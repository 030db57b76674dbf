//! The qcow2 reader against the real qemu-img: every image is made at test time in a temporary
//! directory, and every byte the reader returns is compared with `qemu-img convert -O raw` of the
//! same image. Damaged copies must give errors (or, where the damage touched nothing the read
//! needs, the original bytes), never a panic and never silently different data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use virtio_migrate::image::compression::CompressionType;
use virtio_migrate::image::disk::{open_disk, probe_format, DiskFormat, OpenedDisk};
use virtio_migrate::image::error::ImageError;
use virtio_migrate::image::{IoStats, ReadAt};

const MIB: u64 = 1 << 20;

/// A temporary directory to build images in with qemu-img and qemu-io.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run a tool in the work directory; it must succeed.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = Command::new(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool} (install qemu-utils): {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn qemu_img(&self, args: &[&str]) {
        self.run("qemu-img", args);
    }

    /// `qemu-io -c CMD ...` on a qcow2 image.
    fn qemu_io(&self, image: &str, cmds: &[&str]) {
        let mut args = vec!["-f", "qcow2"];
        for c in cmds {
            args.push("-c");
            args.push(c);
        }
        args.push(image);
        self.run("qemu-io", &args);
    }

    /// A raw file of `size` bytes with a mix of zero, repetitive and incompressible 4 KiB blocks.
    fn pattern(&self, name: &str, size: u64, seed: u32) -> PathBuf {
        let mut data = vec![0u8; size as usize];
        let mut rng = seed.wrapping_mul(2654435761).wrapping_add(1);
        for (i, block) in data.chunks_mut(4096).enumerate() {
            match (i as u32 ^ seed) % 5 {
                0 | 3 => {} // holes
                1 => {
                    for (j, b) in block.iter_mut().enumerate() {
                        *b = (i as u32 * 7 + j as u32 / 16 + seed) as u8;
                    }
                }
                _ => {
                    for b in block.iter_mut() {
                        rng ^= rng << 13;
                        rng ^= rng >> 17;
                        rng ^= rng << 5;
                        *b = rng as u8;
                    }
                }
            }
        }
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// What qemu says the guest sees: `qemu-img convert -O raw`.
    fn flatten(&self, image: &str) -> Vec<u8> {
        let out = format!("{image}.flat");
        self.qemu_img(&["convert", "-O", "raw", image, &out]);
        std::fs::read(self.path(&out)).unwrap()
    }
}

fn open(path: &Path, format: DiskFormat) -> Result<OpenedDisk, ImageError> {
    open_disk(path, format, &IoStats::new())
}

/// Read the whole disk in uneven chunks.
fn read_all(r: &dyn ReadAt) -> std::io::Result<Vec<u8>> {
    let size = r.size() as usize;
    let mut out = vec![0u8; size];
    let mut pos = 0usize;
    let mut step = 777 * 1024 + 512;
    while pos < size {
        let n = step.min(size - pos);
        r.read_exact_at(&mut out[pos..pos + n], pos as u64)?;
        pos += n;
        step = if step > 300_000 { 4093 } else { step * 3 + 1 };
    }
    Ok(out)
}

/// The reader returns exactly what qemu-img convert does, for whole and for scattered reads.
fn assert_same_as_qemu(w: &Workdir, image: &str) -> OpenedDisk {
    let expected = w.flatten(image);
    let disk = open(&w.path(image), DiskFormat::Qcow2).unwrap_or_else(|e| panic!("{image}: {e}"));
    assert_eq!(disk.reader.size(), expected.len() as u64, "{image}: size");
    let got = read_all(&*disk.reader).unwrap_or_else(|e| panic!("{image}: {e}"));
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!("{image}: content differs from qemu-img convert, first at {first:?}");
    }
    // Unaligned reads across cluster and subcluster boundaries.
    let mut x = 12345u64;
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = ((x >> 33) % 70_000) as usize + 1;
        let off = (x >> 11) % (expected.len() as u64 - len as u64);
        let mut b = vec![0u8; len];
        disk.reader.read_exact_at(&mut b, off).unwrap();
        assert_eq!(
            &b[..],
            &expected[off as usize..off as usize + len],
            "{image} at {off}+{len}"
        );
    }
    let mut b = [0u8; 2];
    assert!(disk
        .reader
        .read_exact_at(&mut b, expected.len() as u64 - 1)
        .is_err());
    disk
}

#[test]
fn version_2_and_3_at_several_cluster_sizes() {
    let w = Workdir::new();
    w.pattern("src.raw", 6 * MIB + 12288, 1);
    for (name, opts) in [
        ("v2.qcow2", "compat=0.10"),
        ("v3-512.qcow2", "compat=1.1,cluster_size=512"),
        ("v3-64k.qcow2", "compat=1.1,cluster_size=64k"),
        ("v3-2m.qcow2", "compat=1.1,cluster_size=2M"),
    ] {
        w.qemu_img(&[
            "convert", "-f", "raw", "-O", "qcow2", "-o", opts, "src.raw", name,
        ]);
        let disk = assert_same_as_qemu(&w, name);
        let top = &disk.chain[0];
        assert_eq!(top.format, DiskFormat::Qcow2);
        assert_eq!(
            top.qcow2_version,
            Some(if name == "v2.qcow2" { 2 } else { 3 })
        );
        assert_eq!(top.virtual_size, 6 * MIB + 12288);
    }
    let disk = open(&w.path("v3-2m.qcow2"), DiskFormat::Qcow2).unwrap();
    assert_eq!(disk.chain[0].cluster_size, Some(2 * MIB));
}

#[test]
fn zlib_and_zstd_compressed_clusters() {
    let w = Workdir::new();
    w.pattern("src.raw", 5 * MIB, 2);
    for (name, opts, kind) in [
        ("zlib-64k.qcow2", "cluster_size=64k", CompressionType::Zlib),
        ("zlib-512.qcow2", "cluster_size=512", CompressionType::Zlib),
        ("zlib-2m.qcow2", "cluster_size=2M", CompressionType::Zlib),
        ("zlib-v2.qcow2", "compat=0.10", CompressionType::Zlib),
        (
            "zstd-64k.qcow2",
            "compression_type=zstd",
            CompressionType::Zstd,
        ),
        (
            "zstd-4k.qcow2",
            "compression_type=zstd,cluster_size=4k",
            CompressionType::Zstd,
        ),
        (
            "zstd-2m.qcow2",
            "compression_type=zstd,cluster_size=2M",
            CompressionType::Zstd,
        ),
    ] {
        w.qemu_img(&[
            "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", opts, "src.raw", name,
        ]);
        let disk = assert_same_as_qemu(&w, name);
        assert_eq!(disk.chain[0].compression, Some(kind), "{name}");
    }
}

#[test]
fn zero_clusters_over_a_backing_file() {
    let w = Workdir::new();
    w.pattern("base.raw", 4 * MIB, 3);
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        "top.qcow2",
        "4M",
    ]);
    w.qemu_io(
        "top.qcow2",
        &[
            "write -P 0x11 64k 64k",
            "write -z 128k 192k",
            "write -z 1M 4k",
            "write -P 0x22 2000k 3k",
            "discard 3M 128k",
        ],
    );
    let disk = assert_same_as_qemu(&w, "top.qcow2");
    assert_eq!(disk.chain.len(), 2);
    assert_eq!(disk.chain[1].format, DiskFormat::Raw);
    assert_eq!(disk.chain[0].backing.as_deref(), Some("base.raw"));
    assert_eq!(disk.chain[0].backing_format.as_deref(), Some("raw"));
}

#[test]
fn extended_l2_subclusters() {
    let w = Workdir::new();
    w.pattern("base.raw", 4 * MIB, 4);
    w.qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "base.raw",
        "base.qcow2",
    ]);
    for (name, backing) in [("ext-over.qcow2", true), ("ext-alone.qcow2", false)] {
        let mut args = vec![
            "create",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on,cluster_size=64k",
        ];
        if backing {
            args.extend(["-b", "base.qcow2", "-F", "qcow2"]);
        }
        args.extend([name, "4M"]);
        w.qemu_img(&args);
        w.qemu_io(
            name,
            &[
                "write -P 0xab 4k 4k",
                "write -P 0xcd 130k 1k",
                "write -z 70k 6k",
                "write -z 256k 128k",
                "write -P 0xef 1M 64k",
                "discard 1M 8k",
                "write -P 0x77 1030k 2k",
                "write -z 3000k 2k",
            ],
        );
        let disk = assert_same_as_qemu(&w, name);
        assert!(disk.chain[0].extended_l2);
        // The zero subclusters really hide the backing data.
        let mut b = vec![0xffu8; 6144];
        disk.reader.read_exact_at(&mut b, 70 * 1024).unwrap();
        assert!(b.iter().all(|&x| x == 0));
    }
    // zstd + extended L2, compressed, as an overlay too.
    w.qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd,extended_l2=on",
        "base.raw",
        "zx.qcow2",
    ]);
    assert_same_as_qemu(&w, "zx.qcow2");
}

#[test]
fn backing_chain_with_relative_names_and_a_shorter_base() {
    let w = Workdir::new();
    std::fs::create_dir_all(w.path("images/chain")).unwrap();
    std::fs::create_dir_all(w.path("images/base")).unwrap();
    w.pattern("images/base/base.raw", 3 * MIB + 512, 5);
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        "-b",
        "../base/base.raw",
        "-F",
        "raw",
        "images/chain/mid.qcow2",
        "5M",
    ]);
    w.qemu_io(
        "images/chain/mid.qcow2",
        &["write -P 0x33 1M 100k", "write -P 0x34 4M 64k"],
    );
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "chain/mid.qcow2",
        "-F",
        "qcow2",
        "images/top.qcow2",
        "8M",
    ]);
    w.qemu_io(
        "images/top.qcow2",
        &[
            "write -P 0x44 1050k 8k",
            "write -z 0 4k",
            "write -P 0x45 7M 4k",
        ],
    );
    let disk = assert_same_as_qemu(&w, "images/top.qcow2");
    let paths: Vec<_> = disk.chain.iter().map(|l| l.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            w.path("images/top.qcow2"),
            w.path("images/chain/mid.qcow2"),
            w.path("images/chain/../base/base.raw"),
        ]
    );
    assert_eq!(disk.chain[1].backing.as_deref(), Some("../base/base.raw"));
    assert_eq!(disk.chain[2].virtual_size, 3 * MIB + 512);
    // Past the end of the raw base, below the end of mid: zeros.
    let mut b = vec![0xffu8; 4096];
    disk.reader.read_exact_at(&mut b, 3 * MIB + 512).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}
