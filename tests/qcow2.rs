//! The qcow2 reader against the real qemu-img: every image is made at test time in a temporary
//! directory, and every byte the reader returns is compared with `qemu-img convert -O raw` of the
//! same image. Damaged copies must give errors (or, where the damage touched nothing the read
//! needs, the original bytes), never a panic and never silently different data.

use std::path::{Path, PathBuf};
use std::process::Command;

use virtio_migrate::inspect::image::compression::CompressionType;
use virtio_migrate::inspect::image::disk::{open_disk, probe_format, DiskFormat, OpenedDisk};
use virtio_migrate::inspect::image::error::ImageError;
use virtio_migrate::inspect::image::{IoStats, ReadAt};

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

#[test]
fn external_data_files() {
    let w = Workdir::new();
    for (name, opts) in [
        ("df.qcow2", "data_file=df.data"),
        ("dfraw.qcow2", "data_file=dfraw.data,data_file_raw=on"),
    ] {
        w.qemu_img(&["create", "-f", "qcow2", "-o", opts, name, "3M"]);
        w.qemu_io(
            name,
            &[
                "write -P 0x5a 0 64k",
                "write -P 0x6b 1M 5k",
                "write -z 1M 1k",
                "write -P 0x7c 3068k 4k",
            ],
        );
        let disk = assert_same_as_qemu(&w, name);
        let top = &disk.chain[0];
        assert_eq!(
            top.data_file.as_deref(),
            Some(&*w.path(&name.replace("qcow2", "data")))
        );
        assert_eq!(top.data_file_raw, opts.contains("raw=on"));
    }
    // The data file is read through the image's mapping and counted in the statistics.
    let stats = IoStats::new();
    let disk = open_disk(&w.path("df.qcow2"), DiskFormat::Qcow2, &stats).unwrap();
    let mut b = [0u8; 512];
    disk.reader.read_exact_at(&mut b, MIB).unwrap();
    assert_eq!(&b[..], &[0u8; 512][..]);
    disk.reader.read_exact_at(&mut b, MIB + 1024).unwrap();
    assert_eq!(&b[..], &[0x6bu8; 512][..]);
    let files: Vec<_> = stats.snapshot().into_iter().map(|f| f.path).collect();
    assert_eq!(files, vec![w.path("df.qcow2"), w.path("df.data")]);
    // A missing data file is a clear error.
    std::fs::remove_file(w.path("df.data")).unwrap();
    let e = open(&w.path("df.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("df.data"), "{e}");
}

#[test]
fn internal_snapshots_read_the_active_state() {
    let w = Workdir::new();
    w.pattern("src.raw", 2 * MIB, 6);
    w.qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "src.raw",
        "snap.qcow2",
    ]);
    w.qemu_img(&["snapshot", "-c", "before", "snap.qcow2"]);
    w.qemu_io("snap.qcow2", &["write -P 0x99 0 100k", "write -z 1M 64k"]);
    w.qemu_img(&["snapshot", "-c", "after", "snap.qcow2"]);
    w.qemu_io("snap.qcow2", &["write -P 0x98 40k 8k"]);
    let disk = assert_same_as_qemu(&w, "snap.qcow2");
    assert_eq!(disk.chain[0].snapshots, 2);
    let mut b = [0u8; 4];
    disk.reader.read_exact_at(&mut b, 40 * 1024).unwrap();
    assert_eq!(b, [0x98; 4]);
}

#[test]
fn encrypted_images_are_refused() {
    let w = Workdir::new();
    // qemu-img times its PBKDF2 iterations from CPU usage and fails with "Unable to get accurate
    // CPU usage" when a loaded machine gives it none to measure: try a few times, with more time.
    let made = ["100", "500", "1000"].iter().any(|ms| {
        Command::new("qemu-img")
            .current_dir(w.dir.path())
            .args([
                "create",
                "-f",
                "qcow2",
                "--object",
                "secret,id=sec0,data=hunter2",
                "-o",
                &format!("encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time={ms}"),
                "luks.qcow2",
                "1M",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(made, "qemu-img could not create a LUKS-encrypted qcow2");
    let e = open(&w.path("luks.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap();
    assert!(matches!(e, ImageError::Encrypted { .. }), "{e}");
    assert!(e.to_string().contains("LUKS"), "{e}");
}

#[test]
fn a_raw_disk_is_never_read_as_qcow2() {
    let w = Workdir::new();
    w.pattern("base.raw", MIB, 7);
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        "looks.qcow2",
        "1M",
    ]);
    w.qemu_io("looks.qcow2", &["write -P 0x10 0 4k"]);
    let bytes = std::fs::read(w.path("looks.qcow2")).unwrap();
    let disk = open(&w.path("looks.qcow2"), DiskFormat::Raw).unwrap();
    assert_eq!(disk.chain.len(), 1, "a raw disk has no backing chain");
    assert_eq!(read_all(&*disk.reader).unwrap(), bytes);
    // Only an operator-named file is probed.
    assert_eq!(
        probe_format(&w.path("looks.qcow2")).unwrap(),
        DiskFormat::Qcow2
    );
    assert_eq!(probe_format(&w.path("base.raw")).unwrap(), DiskFormat::Raw);
    // Declared qcow2 on a raw file: not a qcow2 image.
    let e = open(&w.path("base.raw"), DiskFormat::Qcow2).err().unwrap();
    assert!(matches!(e, ImageError::NotQcow2 { .. }), "{e}");
}

/// Patch `bytes` at `offset` in the file.
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_be64(path: &Path, offset: u64) -> u64 {
    let b = std::fs::read(path).unwrap();
    u64::from_be_bytes(b[offset as usize..offset as usize + 8].try_into().unwrap())
}

#[test]
fn backing_chain_errors_are_clear() {
    let w = Workdir::new();
    w.pattern("base.raw", MIB, 8);
    // Missing backing file.
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "gone.raw",
        "-F",
        "raw",
        "-u",
        "missing.qcow2",
        "1M",
    ]);
    let e = open(&w.path("missing.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap();
    assert!(
        matches!(e, ImageError::Backing { .. }) && e.to_string().contains("gone.raw"),
        "{e}"
    );
    // Backing pointing at a directory.
    std::fs::create_dir(w.path("adir")).unwrap();
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "adir",
        "-F",
        "raw",
        "-u",
        "dir.qcow2",
        "1M",
    ]);
    let e = open(&w.path("dir.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("directory"), "{e}");
    // Network backing.
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "nbd://127.0.0.1:10809/x",
        "-F",
        "raw",
        "-u",
        "net.qcow2",
        "1M",
    ]);
    let e = open(&w.path("net.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("network"), "{e}");
    // Unsupported backing format.
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "vmdk",
        "-u",
        "vmdk.qcow2",
        "1M",
    ]);
    let e = open(&w.path("vmdk.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("vmdk"), "{e}");
    // A loop: a -> b -> a.
    w.qemu_img(&["create", "-f", "qcow2", "b.qcow2", "1M"]);
    w.qemu_img(&[
        "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2", "1M",
    ]);
    w.qemu_img(&["rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2"]);
    let e = open(&w.path("a.qcow2"), DiskFormat::Qcow2).err().unwrap();
    assert!(matches!(e, ImageError::ChainLoop { .. }), "{e}");
    // Too deep: 17 images.
    w.qemu_img(&["create", "-f", "qcow2", "d0.qcow2", "1M"]);
    for i in 1..17 {
        let (prev, cur) = (format!("d{}.qcow2", i - 1), format!("d{i}.qcow2"));
        w.qemu_img(&[
            "create", "-f", "qcow2", "-b", &prev, "-F", "qcow2", &cur, "1M",
        ]);
    }
    assert_eq!(
        open(&w.path("d15.qcow2"), DiskFormat::Qcow2)
            .unwrap()
            .chain
            .len(),
        16
    );
    let e = open(&w.path("d16.qcow2"), DiskFormat::Qcow2).err().unwrap();
    assert!(
        matches!(e, ImageError::ChainTooDeep { limit: 16, .. }),
        "{e}"
    );
}

/// Find a header extension's type field in the first cluster.
fn find_extension(path: &Path, kind: u32) -> u64 {
    let b = std::fs::read(path).unwrap();
    let mut off = u32::from_be_bytes(b[100..104].try_into().unwrap()) as usize;
    loop {
        let t = u32::from_be_bytes(b[off..off + 4].try_into().unwrap());
        let len = u32::from_be_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
        assert_ne!(t, 0, "extension {kind:#x} not found");
        if t == kind {
            return off as u64;
        }
        off += 8 + len.next_multiple_of(8);
    }
}

#[test]
fn backing_format_not_recorded() {
    let w = Workdir::new();
    w.pattern("base.raw", MIB, 9);
    w.qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "base.raw",
        "base.qcow2",
    ]);
    for (name, base, fmt) in [
        ("on-raw.qcow2", "base.raw", "raw"),
        ("on-qcow2.qcow2", "base.qcow2", "qcow2"),
    ] {
        w.qemu_img(&["create", "-f", "qcow2", "-b", base, "-F", fmt, name, "1M"]);
        // Turn the backing format extension into an unknown (ignored) one.
        let at = find_extension(&w.path(name), 0xe279_2aca);
        patch(&w.path(name), at, &0x1234_5678u32.to_be_bytes());
    }
    let disk = open(&w.path("on-raw.qcow2"), DiskFormat::Qcow2).unwrap();
    assert_eq!(disk.chain[1].format, DiskFormat::Raw);
    assert_eq!(disk.chain[0].backing_format, None);
    assert_eq!(
        read_all(&*disk.reader).unwrap(),
        std::fs::read(w.path("base.raw")).unwrap()
    );
    let e = open(&w.path("on-qcow2.qcow2"), DiskFormat::Qcow2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not recorded"), "{e}");
}

#[test]
fn unknown_incompatible_features_are_refused() {
    let w = Workdir::new();
    w.qemu_img(&["create", "-f", "qcow2", "f.qcow2", "1M"]);
    patch(&w.path("f.qcow2"), 72, &(1u64 << 9).to_be_bytes());
    let e = open(&w.path("f.qcow2"), DiskFormat::Qcow2).err().unwrap();
    assert!(
        matches!(e, ImageError::Unsupported { .. }) && e.to_string().contains("bit 9"),
        "{e}"
    );
    // The dirty bit alone is fine for reading, and reported.
    patch(&w.path("f.qcow2"), 72, &1u64.to_be_bytes());
    assert!(open(&w.path("f.qcow2"), DiskFormat::Qcow2).unwrap().chain[0].dirty);
}

/// Open and read a damaged copy: an error, or exactly the original content; never a panic.
/// Returns whether it failed.
fn damaged_fails(path: &Path, original: &[u8]) -> bool {
    match open(path, DiskFormat::Qcow2) {
        Err(_) => true,
        Ok(disk) => match read_all(&*disk.reader) {
            Err(e) => {
                assert!(
                    ImageError::from_io(&e).is_some()
                        || e.kind() == std::io::ErrorKind::UnexpectedEof,
                    "{}: error without the image layer's context: {e}",
                    path.display()
                );
                true
            }
            Ok(got) => {
                assert!(
                    got == original,
                    "{}: damaged copy read as different data",
                    path.display()
                );
                false
            }
        },
    }
}

#[test]
fn truncated_copies_give_errors() {
    let w = Workdir::new();
    w.pattern("src.raw", 2 * MIB, 10);
    w.qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4k",
        "src.raw",
        "plain.qcow2",
    ]);
    w.qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "src.raw",
        "zlib.qcow2",
    ]);
    w.qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        "src.raw",
        "zstd.qcow2",
    ]);
    w.qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        "-b",
        "src.raw",
        "-F",
        "raw",
        "ext.qcow2",
        "2M",
    ]);
    w.qemu_io(
        "ext.qcow2",
        &[
            "write -P 0x42 4k 6k",
            "write -z 100k 2k",
            "write -P 0x43 1M 64k",
        ],
    );
    let original = std::fs::read(w.path("src.raw")).unwrap();
    for name in ["plain.qcow2", "zlib.qcow2", "zstd.qcow2", "ext.qcow2"] {
        let src = w.path(name);
        let expected = w.flatten(name);
        let full = std::fs::read(&src).unwrap();
        let cluster = 1u64 << u32::from_be_bytes(full[20..24].try_into().unwrap());
        let l1 = read_be64(&src, 40);
        let l2 = read_be64(&src, l1) & 0x00ff_ffff_ffff_fe00;
        let len = full.len() as u64;
        let mut cuts = vec![
            0,
            3,
            50,
            71,
            100,
            103,
            200,
            l1,
            l1 + 4,
            l2,
            l2 + 100,
            l2 + cluster / 2,
        ];
        cuts.extend([len / 2, len - cluster, len - 100, len - 1]);
        let mut failed = 0;
        for (i, cut) in cuts.iter().enumerate() {
            let p = w.path(&format!("{name}.cut{i}"));
            std::fs::write(&p, &full[..(*cut).min(len) as usize]).unwrap();
            if damaged_fails(&p, &expected) {
                failed += 1;
            } else {
                assert!(*cut >= len - cluster, "{name} cut at {cut} read fine");
            }
        }
        assert!(
            failed >= cuts.len() - 3,
            "{name}: only {failed} of {} cuts failed",
            cuts.len()
        );
    }
    assert_eq!(original.len() as u64, 2 * MIB);
}

#[test]
fn corrupted_tables_and_compressed_data_give_errors() {
    let w = Workdir::new();
    w.pattern("src.raw", MIB, 11);
    w.qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "src.raw",
        "plain.qcow2",
    ]);
    w.qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "src.raw",
        "zlib.qcow2",
    ]);
    w.qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        "src.raw",
        "zstd.qcow2",
    ]);
    let expected = std::fs::read(w.path("src.raw")).unwrap();
    let copy = |from: &str, to: &str| -> PathBuf {
        std::fs::copy(w.path(from), w.path(to)).unwrap();
        w.path(to)
    };
    // L1 entry pointing past the end of the file.
    let p = copy("plain.qcow2", "l1.qcow2");
    let l1 = read_be64(&p, 40);
    patch(&p, l1, &(0x00ff_ffff_0000_0000u64 | 1 << 63).to_be_bytes());
    let e = read_all(&*open(&p, DiskFormat::Qcow2).unwrap().reader).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
    // L1 entry pointing at an unaligned L2 table.
    let p = copy("plain.qcow2", "l1u.qcow2");
    patch(&p, l1, &(0x1_0200u64).to_be_bytes());
    assert!(damaged_fails(&p, &expected));
    // L2 entry (the first allocated one) pointing past the end of the file.
    let p = copy("plain.qcow2", "l2.qcow2");
    let l2 = read_be64(&p, l1) & 0x00ff_ffff_ffff_fe00;
    let first = (0..8192u64)
        .find(|i| read_be64(&p, l2 + i * 8) != 0)
        .unwrap();
    patch(
        &p,
        l2 + first * 8,
        &(0x00ff_ffff_0000_0000u64 | 1 << 63).to_be_bytes(),
    );
    let e = read_all(&*open(&p, DiskFormat::Qcow2).unwrap().reader).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
    // Garbage in place of compressed data, and a compressed entry whose offset is past the end.
    for name in ["zlib.qcow2", "zstd.qcow2"] {
        let p = copy(name, &format!("bad-{name}"));
        let l1 = read_be64(&p, 40);
        let l2 = read_be64(&p, l1) & 0x00ff_ffff_ffff_fe00;
        let (i, entry) = (0..8192u64)
            .map(|i| (i, read_be64(&p, l2 + i * 8)))
            .find(|(_, e)| e & (1 << 62) != 0)
            .expect("a compressed cluster");
        let coffset = entry & ((1u64 << 54) - 1);
        patch(&p, coffset, &[0xff; 96]);
        let e = read_all(&*open(&p, DiskFormat::Qcow2).unwrap().reader).unwrap_err();
        assert!(e.to_string().contains("compressed cluster"), "{name}: {e}");
        let p = copy(name, &format!("far-{name}"));
        patch(&p, l2 + i * 8, &((1u64 << 62) | (1u64 << 50)).to_be_bytes());
        assert!(damaged_fails(&p, &expected));
    }
    // Pseudo-random bit flips in the header and tables of small-cluster images: an error or
    // some data, never a panic (a flip may hit guest data, so the content is not compared).
    w.qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=512",
        "src.raw",
        "small.qcow2",
    ]);
    w.qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=16k,extended_l2=on",
        "src.raw",
        "smallx.qcow2",
    ]);
    for name in ["small.qcow2", "smallx.qcow2"] {
        let full = std::fs::read(w.path(name)).unwrap();
        let meta_end = (read_be64(&w.path(name), 40) as usize + 8192).min(full.len());
        let mut x = 99u64;
        for _ in 0..150 {
            let mut bad = full.clone();
            for _ in 0..4 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (x >> 20) as usize % meta_end;
                bad[at] ^= 1 << ((x >> 5) % 8);
            }
            let p = w.path(&format!("{name}.flip"));
            std::fs::write(&p, &bad).unwrap();
            if let Ok(disk) = open(&p, DiskFormat::Qcow2) {
                let _ = read_all(&*disk.reader);
            }
        }
    }
}

#[test]
fn one_sector_of_a_large_sparse_image_costs_four_small_reads() {
    let w = Workdir::new();
    w.qemu_img(&["create", "-f", "qcow2", "big.qcow2", "1T"]);
    w.qemu_io(
        "big.qcow2",
        &["write -P 0xa5 500G 64k", "write -P 0x5a 900G 4k"],
    );
    let file_size = std::fs::metadata(w.path("big.qcow2")).unwrap().len();
    let stats = IoStats::new();
    let disk = open_disk(&w.path("big.qcow2"), DiskFormat::Qcow2, &stats).unwrap();
    let after_open = stats.total_bytes();
    let mut b = vec![0u8; 4096];
    disk.reader.read_exact_at(&mut b, 500 << 30).unwrap();
    assert!(b.iter().all(|&x| x == 0xa5));
    let first = stats.snapshot()[0].clone();
    // A neighbouring sector: the L1 and L2 slices are cached, only the data is read.
    disk.reader
        .read_exact_at(&mut b, (500 << 30) + 8192)
        .unwrap();
    let second = stats.snapshot()[0].clone();
    eprintln!(
        "1 TiB sparse qcow2, file {file_size} bytes: open {after_open} bytes; first 4 KiB read: \
         {} bytes in {} reads; next sector: {} bytes in {} read(s)",
        first.bytes_read,
        first.reads,
        second.bytes_read - first.bytes_read,
        second.reads - first.reads
    );
    // Header (4 KiB) + L1 slice (4 KiB) + L2 slice (4 KiB) + the 4 KiB of data.
    assert_eq!(first.reads, 4);
    assert_eq!(first.bytes_read, 4 * 4096);
    assert!(first.bytes_read * 10 < file_size);
    assert_eq!(
        (
            second.reads - first.reads,
            second.bytes_read - first.bytes_read
        ),
        (1, 4096)
    );
    // An unallocated sector costs at most the table slices.
    disk.reader.read_exact_at(&mut b, 10 << 30).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    assert!(stats.total_bytes() - second.bytes_read <= 4096);
}

/// The committed fixtures (fixtures/qcow2/make.sh), checked without qemu-img: the SHA-256 of
/// what the reader returns equals that of `qemu-img convert -O raw` recorded by the script.
#[test]
fn committed_fixtures_match_their_recorded_content() {
    use sha2::{Digest, Sha256};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/qcow2");
    let sums = std::fs::read_to_string(dir.join("expected.sha256")).unwrap();
    let mut checked = 0;
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").unwrap();
        let format = if name.ends_with(".qcow2") {
            DiskFormat::Qcow2
        } else {
            DiskFormat::Raw
        };
        let disk = open(&dir.join(name), format).unwrap_or_else(|e| panic!("{name}: {e}"));
        let data = read_all(&*disk.reader).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, sum, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 4);

    let overlay = open(&dir.join("overlay-zstd-extl2.qcow2"), DiskFormat::Qcow2).unwrap();
    let top = &overlay.chain[0];
    assert_eq!(
        (
            top.compression,
            top.extended_l2,
            top.cluster_size,
            top.backing.as_deref()
        ),
        (
            Some(CompressionType::Zstd),
            true,
            Some(16384),
            Some("template.qcow2")
        )
    );
    assert_eq!(overlay.chain[1].compression, Some(CompressionType::Zlib));
    assert_eq!(overlay.chain[1].path, dir.join("template.qcow2"));
    // The file ends inside its last (compressed) cluster.
    assert_ne!(top.file_size % 512, 0);

    let v2 = open(&dir.join("v2-512.qcow2"), DiskFormat::Qcow2).unwrap();
    let kinds: Vec<_> = v2
        .chain
        .iter()
        .map(|l| (l.format, l.qcow2_version, l.virtual_size))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (DiskFormat::Qcow2, Some(2), 256 * 1024),
            (DiskFormat::Raw, None, 96 * 1024)
        ]
    );

    let evil = dir.join("raw-with-qcow2-magic.img");
    assert_eq!(probe_format(&evil).unwrap(), DiskFormat::Qcow2);
    assert_eq!(open(&evil, DiskFormat::Raw).unwrap().chain.len(), 1);
}
