//! One entry point per parser for the fuzz targets (`fuzz/`) and for the test that replays their
//! corpora and crashers (`tests/fuzz_corpus.rs`).
//!
//! Each function takes raw bytes (hostile input), runs the real parsing code over them the way
//! the tool does, and returns nothing: errors are expected results, a panic is a finding. Every
//! function bounds the work it asks for (keys walked, bytes read), so a slow input means a slow
//! parser, not a slow harness.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::domain::MachineFamily;
use crate::inspect::guestfs::{Entry, GuestFs};
use crate::inspect::hive::{Hive, Key};
use crate::inspect::image::ReadAt;

/// Most keys [`hive_lookups`] visits in its walk of the whole tree.
const HIVE_WALK_KEYS: usize = 256;
/// Most subkeys listed per key in that walk.
const HIVE_WALK_FANOUT: usize = 64;

/// The registry lookups the Windows verdict makes, over a hive file `primary` with an optional
/// transaction log `log1` (used only when the primary is dirty): the current control set from
/// `Select\Current`, the `viostor`/`vioscsi`/`netkvm` services in it and in `ControlSet001`/`002`,
/// the `CriticalDeviceDatabase` entries and `DriverDatabase\DeviceIds\PCI` entries of the virtio
/// devices; then a bounded walk of the tree that decodes and displays every value it meets.
pub fn hive_lookups(primary: &[u8], log1: Option<&[u8]>) {
    let primary: Arc<dyn ReadAt> = Arc::new(primary.to_vec());
    let log1 = log1.map(|log| Arc::new(log.to_vec()) as Arc<dyn ReadAt>);
    let Ok(hive) = Hive::open(primary, log1, None) else {
        return;
    };
    let _ = format!("{:?} {}", hive.state(), hive.bins_size());

    let current = hive
        .key("Select")
        .ok()
        .flatten()
        .and_then(|select| hive.value(&select, "Current").ok().flatten())
        .and_then(|value| value.as_u64());
    let mut sets = vec![1u64, 2];
    if let Some(n) = current.filter(|n| (1..=999).contains(n) && !sets.contains(n)) {
        sets.insert(0, n);
    }
    for set in sets {
        let control_set = format!("ControlSet{set:03}");
        for service in ["viostor", "vioscsi", "netkvm"] {
            if let Ok(Some(key)) = hive.key(&format!("{control_set}\\Services\\{service}")) {
                for name in ["Start", "Type", "ErrorControl", "Group", "ImagePath", ""] {
                    if let Ok(Some(value)) = hive.value(&key, name) {
                        let _ = (value.to_string(), value.as_u64(), value.as_str());
                    }
                }
            }
        }
        if let Ok(Some(cdd)) = hive.key(&format!("{control_set}\\Control\\CriticalDeviceDatabase"))
        {
            visit_matching(&hive, &cdd, "pci#ven_1af4");
        }
    }
    if let Ok(Some(pci)) = hive.key("DriverDatabase\\DeviceIds\\PCI") {
        visit_matching(&hive, &pci, "ven_1af4");
    }
    walk(&hive);
    // The verdict itself, with this hive as SYSTEM and as SOFTWARE, over an empty volume.
    let assessment = crate::inspect::verdict::assess_hives(
        &NoFiles,
        "Windows",
        &hive,
        &hive,
        MachineFamily::Q35,
        &[],
    );
    let _ = assessment.lines();
}

/// A [`GuestFs`] without files (the verdict looks driver files up; none are there).
struct NoFiles;

impl GuestFs for NoFiles {
    fn lookup(&self, _path: &str) -> anyhow::Result<Option<Entry>> {
        Ok(None)
    }
    fn read_dir(&self, _path: &str) -> anyhow::Result<Vec<Entry>> {
        Ok(Vec::new())
    }
    fn open(&self, path: &str) -> anyhow::Result<Arc<dyn ReadAt>> {
        anyhow::bail!("no file {path}")
    }
}

/// Read the values of the subkeys of `key` whose names start with `prefix` (any case).
fn visit_matching(hive: &Hive, key: &Key, prefix: &str) {
    let Ok(subkeys) = hive.subkeys(key) else {
        return;
    };
    for sub in subkeys.iter().take(HIVE_WALK_FANOUT) {
        if sub.name.to_ascii_lowercase().starts_with(prefix) {
            if let Ok(values) = hive.values(sub) {
                for (name, value) in values {
                    let _ = format!("{name} = {value}");
                }
            }
        }
    }
}

/// Breadth-first walk from the root over at most [`HIVE_WALK_KEYS`] keys, decoding every value.
fn walk(hive: &Hive) {
    let Ok(root) = hive.root() else {
        return;
    };
    let mut queue = VecDeque::from([root]);
    let mut visited = 0;
    while let Some(key) = queue.pop_front() {
        visited += 1;
        if visited > HIVE_WALK_KEYS {
            break;
        }
        let _ = (key.last_written(), key.subkey_count(), key.value_count());
        if let Ok(values) = hive.values(&key) {
            for (name, value) in values {
                let _ = format!("{name} = {value} {:?}", value.value_type());
            }
        }
        if let Ok(subkeys) = hive.subkeys(&key) {
            // Look one subkey up by name too (exercises hashes and hints).
            if let Some(first) = subkeys.first() {
                let _ = hive.subkey(&key, &first.name);
            }
            queue.extend(subkeys.into_iter().take(HIVE_WALK_FANOUT));
        }
    }
}

/// A libvirt domain XML through the domain reader and the planner: the facts and candidacy, then
/// plans for both target buses (all disks, SATA included, NICs always, forced; and the boot disk
/// only with the defaults) with the guest ready, their JSON and their diffs.
///
/// A plan the planner calls ready must come with a new definition that is well-formed XML and
/// that the domain reader reads again: if not, this panics (a planner bug, not an input error).
pub fn domain_plan(xml: &str) {
    use crate::plan::{
        plan, DiskSelection, GuestReadiness, HostFacts, NicPolicy, PlanOptions, PlanStatus,
        Readiness, TargetBus,
    };
    let Ok(facts) = crate::domain::parse_domain(xml) else {
        return;
    };
    let _ = facts.candidacy();
    let _ = facts.boot_disk().map(|disk| disk.source.display());
    let _ = serde_json::to_string(&facts);

    let ready = GuestReadiness {
        blk: Readiness::Ready,
        scsi: Readiness::Ready,
        nic: Readiness::Ready,
        hazards: Vec::new(),
    };
    let everything = |bus| PlanOptions {
        bus,
        include_sata: true,
        disks: DiskSelection::All,
        nics: NicPolicy::Always,
        force: true,
    };
    let options = [
        everything(TargetBus::Virtio),
        everything(TargetBus::Scsi),
        PlanOptions {
            disks: DiskSelection::Boot,
            ..PlanOptions::default()
        },
    ];
    for opts in options {
        let Ok(planned) = plan(xml, Some(&ready), &HostFacts::default(), &opts) else {
            continue;
        };
        let _ = (serde_json::to_string(&planned), planned.diff());
        if planned.status() == PlanStatus::Ready {
            if let Err(e) = crate::domain::parse_domain(&planned.new_xml) {
                panic!("the planned definition does not read back: {e}");
            }
        }
    }
}

/// [`domain_plan`] over bytes (the fuzz targets' input): invalid UTF-8 is decoded lossily.
pub fn domain_plan_bytes(data: &[u8]) {
    domain_plan(&String::from_utf8_lossy(data));
}

/// Size of the fixed raw backing file [`qcow2_read`] gives every image (64 KiB of a pattern).
const QCOW2_BACKING_LEN: usize = 64 << 10;
/// Most guest reads [`qcow2_read`] makes.
const QCOW2_READS: u64 = 48;

/// A per-call scratch directory under the system temporary directory, removed on drop (the qcow2
/// reader opens host files by path).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "virtio-migrate-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The qcow2 reader over a fuzzed image file: header, extensions and checks, then reads of the
/// virtual disk (the first sectors, each cluster boundary of the first clusters, the end, and
/// points spread over the disk) through the L1/L2 tables, compressed clusters, subclusters and
/// a fixed 64 KiB raw backing file (`backing.raw` beside the image, attached whatever name the
/// header holds).
pub fn qcow2_read(data: &[u8]) {
    use crate::inspect::image::qcow2::Qcow2Image;
    use crate::inspect::image::IoStats;
    let Ok(scratch) = Scratch::new() else {
        return;
    };
    static BACKING: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    let backing =
        BACKING.get_or_init(|| Arc::new((0..QCOW2_BACKING_LEN).map(|i| (i % 251) as u8).collect()));
    let image_path = scratch.path().join("image.qcow2");
    if std::fs::write(&image_path, data).is_err() {
        return;
    }
    // An external data file named `backing.raw` resolves too (written only when the header
    // asks for a data file: most inputs do not).
    let incompatible = data.get(72..80).map_or(0, |b| b[7]);
    if incompatible & (crate::inspect::image::qcow2::INCOMPAT_DATA_FILE as u8) != 0
        && std::fs::write(scratch.path().join("backing.raw"), backing.as_slice()).is_err()
    {
        return;
    }
    let stats = IoStats::new();
    let Ok(image) = Qcow2Image::open(&image_path, &stats) else {
        return;
    };
    let header = image.header();
    let cluster = header.cluster_size();
    let _ = format!("{header:?}");
    let disk = image.with_backing(backing.clone());
    let size = disk.size();
    let mut offsets = vec![0, 512, cluster.saturating_sub(512), cluster];
    offsets.extend((1..8).map(|i| i * cluster - 256));
    offsets.push(size.saturating_sub(4096));
    offsets.extend((1..=QCOW2_READS).map(|i| size / QCOW2_READS * i));
    let mut buf = vec![0u8; 4096];
    for offset in offsets.into_iter().take(QCOW2_READS as usize) {
        let len = (size.saturating_sub(offset)).min(buf.len() as u64) as usize;
        if let Some(part) = buf.get_mut(..len) {
            let _ = disk.read_exact_at(part, offset);
        }
    }
}

/// A volume of `size` bytes: `head` from offset 0, then `base` after the end of `head`, then
/// zeros (the fuzz inputs keep only the bytes that matter).
struct Overlaid {
    base: Arc<Vec<u8>>,
    head: Vec<u8>,
    size: u64,
}

impl Overlaid {
    /// Copy the bytes of `layer` that fall in `[offset, offset + buf.len())` into `buf`.
    fn copy(layer: &[u8], buf: &mut [u8], offset: u64) {
        let have = layer.len() as u64;
        if offset >= have {
            return;
        }
        let from = offset as usize;
        let to = (offset + buf.len() as u64).min(have) as usize;
        if let (Some(dst), Some(src)) = (buf.get_mut(..to - from), layer.get(from..to)) {
            dst.copy_from_slice(src);
        }
    }
}

impl ReadAt for Overlaid {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"));
        }
        buf.fill(0);
        Overlaid::copy(&self.base, buf, offset);
        Overlaid::copy(&self.head, buf, offset);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// The partition table reader over a fuzzed disk (MBR with its extended chain, GPT with 512- and
/// 4096-byte sectors and its backup, bare file systems), then the first sector of each partition
/// it reports, read through a window as the inspection does.
pub fn partitions(data: &[u8]) {
    use crate::inspect::image::partition::{fs_kind_of_boot_sector, read_partition_table};
    use crate::inspect::image::Window;
    let disk: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let table = read_partition_table(&*disk);
    let _ = (table.is_dynamic(), format!("{table:?}"));
    for partition in table.partitions.iter().take(256) {
        let Ok(window) = Window::new(disk.clone(), partition.start, partition.length) else {
            continue;
        };
        let mut sector = [0u8; 512];
        if window.read_exact_at(&mut sector, 0).is_ok() {
            let _ = fs_kind_of_boot_sector(&sector);
        }
    }
}

/// The driver-file reader ([`crate::inspect::pe::read_driver`]) over a fuzzed file, and every
/// fact the verdict derives from it (problems for AMD64 with a signature required and for an
/// unknown machine, what was unread, the summary, the JSON). Its read budget must hold whatever
/// the input: a check that read more than [`crate::inspect::pe::MAX_TOTAL_READ`] bytes or made
/// more than [`crate::inspect::pe::MAX_READS`] calls is a finding.
pub fn pe_driver(data: &[u8]) {
    use crate::inspect::pe::{self, Machine};
    let file = data.to_vec();
    match pe::read_driver(&file) {
        Ok(image) => {
            assert!(
                image.cost.bytes <= pe::MAX_TOTAL_READ && image.cost.reads <= pe::MAX_READS,
                "read budget broken: {:?}",
                image.cost
            );
            assert!(image.sections.len() <= usize::from(pe::MAX_SECTIONS));
            let _ = (
                image.problems(Some(Machine::AMD64), true),
                image.problems(None, false),
                image.unread(),
                image.summary(),
                image.signer(),
                image.file_version(),
                serde_json::to_string(&image),
            );
        }
        Err(e) => {
            let _ = (e.to_string(), e.is_io());
        }
    }
}

/// Largest volume [`ntfs_root`] presents (the boot sector states the size; zeros fill it).
const NTFS_MAX_VOLUME: u64 = 64 << 20;

/// An NTFS volume from a fuzzed image of its first bytes, zero-extended to the size its boot
/// sector states (at most 64 MiB); see [`ntfs_volume`] for what is done with it.
pub fn ntfs_root(data: &[u8]) {
    let stated = data
        .get(0x28..0x30)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .unwrap_or(0);
    let sector = data
        .get(0x0B..0x0D)
        .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
        .unwrap_or(0);
    let size = stated
        .saturating_add(1)
        .saturating_mul(sector)
        .clamp(data.len() as u64, NTFS_MAX_VOLUME.max(data.len() as u64));
    ntfs_volume(Arc::new(Overlaid {
        base: Arc::new(Vec::new()),
        head: data.to_vec(),
        size,
    }));
}

/// An NTFS volume made of `base` (a whole volume) with its first bytes replaced by `head` (the
/// fuzz input: boot sector and `$MFT` records, while the upcase table, index blocks and file
/// data stay those of `base`); see [`ntfs_volume`].
pub fn ntfs_root_over(base: Arc<Vec<u8>>, head: &[u8]) {
    let size = (base.len().max(head.len())) as u64;
    ntfs_volume(Arc::new(Overlaid {
        base,
        head: head.to_vec(),
        size,
    }));
}

/// A whole fixed NTFS volume to lay the `ntfs_patch` target's inputs over, with its regions
/// found once: the fuzz input is read as a list of patches aimed at the volume's metadata, so
/// that the index blocks, deep file records and data runs far past the volume's first bytes are
/// fuzzed too.
///
/// Each patch is `[region: u8][offset: u16 LE][length: u8][bytes]`: the region is one of the
/// boot sector, every 1 KiB file record (`FILE`), every 4 KiB index block (`INDX`) found in the
/// volume, or the whole volume; the offset (counted in steps of the region's size / 65,536 where
/// that is more than a byte) is taken modulo the region's size and the bytes are written there
/// (cut at the region's end). At most [`NTFS_MAX_PATCHES`] patches are applied.
pub struct NtfsPatchBase {
    volume: Arc<Vec<u8>>,
    /// (start, size) of each region, in the order the region byte counts them.
    regions: Vec<(usize, usize)>,
}

impl NtfsPatchBase {
    pub fn new(volume: Arc<Vec<u8>>) -> NtfsPatchBase {
        let mut regions: Vec<(usize, usize)> = vec![(0, 512.min(volume.len()))];
        for at in (0..volume.len().saturating_sub(4)).step_by(512) {
            match volume.get(at..at + 4) {
                Some(b"FILE") if at % 1024 == 0 => regions.push((at, 1024)),
                Some(b"INDX") => regions.push((at, 4096)),
                _ => {}
            }
        }
        regions.push((0, volume.len()));
        NtfsPatchBase { volume, regions }
    }

    /// The NTFS reader, the Windows root lookup and the verdict over the patched volume.
    pub fn inspect(&self, patches: &[u8]) {
        ntfs_volume(Arc::new(self.patched(patches)));
    }

    /// The bytes of the patched volume (what the reads of [`NtfsPatchBase::inspect`] see).
    pub fn bytes(&self, patches: &[u8]) -> Vec<u8> {
        let mut volume = self.volume.to_vec();
        for (at, bytes) in self.writes(patches) {
            volume[at..at + bytes.len()].copy_from_slice(bytes);
        }
        volume
    }

    /// The volume with the patches laid over it as it is read (no copy of the volume).
    fn patched(&self, patches: &[u8]) -> Patched {
        Patched {
            base: self.volume.clone(),
            patches: self
                .writes(patches)
                .into_iter()
                .map(|(at, bytes)| (at as u64, bytes.to_vec()))
                .collect(),
        }
    }

    /// The writes an input asks for: (offset, bytes), each inside the volume, in order.
    fn writes<'a>(&self, patches: &'a [u8]) -> Vec<(usize, &'a [u8])> {
        let mut out = Vec::new();
        let mut rest = patches;
        for _ in 0..NTFS_MAX_PATCHES {
            let [region, lo, hi, len, tail @ ..] = rest else {
                break;
            };
            let (start, size) = self.regions[usize::from(*region) % self.regions.len()];
            let len = usize::from(*len).min(tail.len());
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            if size == 0 {
                continue;
            }
            // A region larger than 64 KiB (the whole volume) is reached in steps of size / 64 Ki.
            let step = (size >> 16).max(1);
            let at = start + usize::from(u16::from_le_bytes([*lo, *hi])) * step % size;
            let end = (at + bytes.len()).min(start + size).min(self.volume.len());
            if let Some(bytes) = bytes.get(..end.saturating_sub(at)) {
                out.push((at, bytes));
            }
        }
        out
    }
}

/// A volume read as `base` with `patches` written over it in order.
struct Patched {
    base: Arc<Vec<u8>>,
    patches: Vec<(u64, Vec<u8>)>,
}

impl ReadAt for Patched {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.base.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
        buf.copy_from_slice(&self.base[offset as usize..end as usize]);
        for (at, bytes) in &self.patches {
            let from = (*at).max(offset);
            let to = (at + bytes.len() as u64).min(end);
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
            }
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.base.len() as u64
    }
}

/// The most patches [`NtfsPatchBase`] applies from one input.
pub const NTFS_MAX_PATCHES: usize = 64;

/// Decompress a gzip file held in memory (at most 64 MiB out): the fuzz targets' fixed bases.
pub fn gunzip(gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(gz)
        .take(NTFS_MAX_VOLUME)
        .read_to_end(&mut out);
    out
}

/// Open the NTFS volume (upcase table, `$Volume`), list its root, look for a hibernation file,
/// find the Windows system root, inspect it (driver files) and run the verdict over the hives
/// it holds (read through the volume's data runs).
fn ntfs_volume(volume: Arc<dyn ReadAt>) {
    use crate::inspect::image::ntfs::NtfsVolume;
    use crate::inspect::image::windows_root::{find_system_root, hibernation, inspect_root};
    let Ok(fs) = NtfsVolume::open(volume) else {
        return;
    };
    let _ = format!("{:?}", fs.facts());
    let _ = fs.read_dir("");
    let _ = hibernation(&fs);
    let Ok(Some(root)) = find_system_root(&fs) else {
        return;
    };
    let _ = format!("{:?}", inspect_root(&fs, &root));
    let assessment = crate::inspect::verdict::assess(&fs, &root, MachineFamily::I440fx, &[]);
    let _ = assessment.lines();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a patched volume's reads see equals the volume with the patches written into a copy,
    /// for reads that start before, inside and after overlapping patches.
    #[test]
    fn patched_reads_equal_a_patched_copy() {
        let mut base = vec![0u8; 1 << 20];
        for (i, b) in base.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        base[4096..4100].copy_from_slice(b"FILE");
        base[8192..8196].copy_from_slice(b"INDX");
        let mut input = Vec::new();
        for (region, offset, bytes) in [
            (1u8, 10u16, &b"abcdef"[..]),
            (2, 4000, b"0123456789"),
            (3, 300, b"overlap-one"),
            (3, 300 + 1, b"OVERLAP-TWO"),
            (0, 511, b"xy"),
        ] {
            input.push(region);
            input.extend_from_slice(&offset.to_le_bytes());
            input.push(bytes.len() as u8);
            input.extend_from_slice(bytes);
        }
        let base = NtfsPatchBase::new(Arc::new(base));
        let copy = base.bytes(&input);
        assert_ne!(copy, *base.volume);
        let volume = base.patched(&input);
        for offset in [
            0u64, 500, 4090, 4100, 8190, 12_280, 12_290, 12_300, 1_048_000,
        ] {
            for len in [1usize, 7, 512, 4096] {
                let len = len.min((1 << 20) - offset as usize);
                let mut buf = vec![0u8; len];
                volume.read_exact_at(&mut buf, offset).unwrap();
                assert_eq!(
                    buf,
                    copy[offset as usize..offset as usize + len],
                    "{offset}+{len}"
                );
            }
        }
        let mut buf = [0u8; 2];
        assert!(volume.read_exact_at(&mut buf, (1 << 20) - 1).is_err());
    }
}
