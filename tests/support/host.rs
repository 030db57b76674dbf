//! Real-host test harness: a libvirt daemon with the QEMU driver (`qemu:///system`) and the
//! tiny test guest built by `tests/guest/build-tiny-guest.sh`.
//!
//! - `VIRTIO_MIGRATE_HOST_TESTS` unset: a host test is skipped (with a line on stderr saying
//!   why) when the daemon or the guest is missing; `required`: it fails instead; `skip`: always
//!   skipped.
//! - One guest at a time: [`Host::acquire`] takes an exclusive file lock held until the
//!   `Host` is dropped (the machine has 2 cores; TCG guests are slow).
//! - Every domain gets a unique name (`vmtest-<pid>-<n>-<label>`) and is destroyed, undefined
//!   and its files removed when its [`TestGuest`] is dropped, even when the test panics.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;

/// The URI of the real daemon.
pub const SYSTEM_URI: &str = "qemu:///system";

/// Where the tiny guest is built (override with `VIRTIO_MIGRATE_TINY_GUEST`).
pub fn tiny_guest_dir() -> PathBuf {
    std::env::var_os("VIRTIO_MIGRATE_TINY_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/virtio-migrate-test/guest"))
}

/// What to do when the host is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPolicy {
    /// Skip host tests when the host is not ready.
    Auto,
    /// Fail host tests when the host is not ready (CI).
    Required,
    /// Never run host tests.
    Skip,
}

impl HostPolicy {
    /// Read `VIRTIO_MIGRATE_HOST_TESTS`.
    pub fn from_env() -> HostPolicy {
        match std::env::var("VIRTIO_MIGRATE_HOST_TESTS").as_deref() {
            Ok("required") => HostPolicy::Required,
            Ok("skip") | Ok("0") | Ok("off") => HostPolicy::Skip,
            _ => HostPolicy::Auto,
        }
    }
}

/// A ready host: a connection to the daemon, the guest's kernel and initramfs, and the lock
/// that keeps other host tests from booting guests at the same time.
pub struct Host {
    pub conn: Connect,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    _lock: File,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Host {
    /// The host for a test named `test`, or `None` (after saying why on stderr) when the test
    /// must be skipped. Panics when `VIRTIO_MIGRATE_HOST_TESTS=required` and anything is missing.
    pub fn acquire(test: &str) -> Option<Host> {
        let policy = HostPolicy::from_env();
        if policy == HostPolicy::Skip {
            eprintln!("skipping host test {test}: VIRTIO_MIGRATE_HOST_TESTS=skip");
            return None;
        }
        match Host::try_acquire() {
            Ok(h) => Some(h),
            Err(why) => {
                if policy == HostPolicy::Required {
                    panic!("host test {test}: VIRTIO_MIGRATE_HOST_TESTS=required but {why}");
                }
                eprintln!(
                    "skipping host test {test}: {why} (run .ci/setup-host.sh as root, or set \
                     VIRTIO_MIGRATE_HOST_TESTS=required to make this a failure)"
                );
                None
            }
        }
    }

    fn try_acquire() -> Result<Host, String> {
        virt::error::clear_error_callback();
        let dir = tiny_guest_dir();
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd.img");
        if !kernel.is_file() || !initrd.is_file() {
            return Err(format!(
                "the tiny guest is not built in {} (tests/guest/build-tiny-guest.sh)",
                dir.display()
            ));
        }
        let lock_path = std::env::temp_dir().join("virtio-migrate-host-tests.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let conn = Connect::open(Some(SYSTEM_URI))
            .map_err(|e| format!("libvirtd does not answer on {SYSTEM_URI}: {e}"))?;
        match conn.driver_type() {
            Ok(t) if t.eq_ignore_ascii_case("qemu") => {}
            Ok(t) => return Err(format!("{SYSTEM_URI} is driven by {t}, not QEMU")),
            Err(e) => return Err(format!("{SYSTEM_URI}: {e}")),
        }
        Ok(Host {
            conn,
            kernel,
            initrd,
            _lock: lock,
        })
    }

    /// A fresh, unique domain name with a readable label.
    pub fn unique_name(label: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        format!("vmtest-{}-{}-{}", std::process::id(), n, label)
    }

    /// Make the files for a guest and its domain XML; nothing is defined yet.
    pub fn guest(&self, label: &str, spec: &GuestSpec) -> TestGuest<'_> {
        let name = Host::unique_name(label);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("temp dir for the guest");
        let mut disks = String::new();
        for (i, d) in spec.disks.iter().enumerate() {
            let (path, format) = match d.image {
                Some(fixture) => copy_fixture_image(fixture, dir.path(), i),
                None => {
                    let path = dir.path().join(format!("disk{i}.{}", d.format.ext()));
                    let status = Command::new("qemu-img")
                        .args(["create", "-q", "-f", d.format.ext()])
                        .arg(&path)
                        .arg(format!("{}M", d.size_mib))
                        .status()
                        .expect("run qemu-img");
                    assert!(status.success(), "qemu-img create {}", path.display());
                    (path, d.format.ext().to_string())
                }
            };
            disks.push_str(&format!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='{}'/>\n      \
                 <source file='{}'/>\n      <target dev='{}' bus='{}'/>\n    </disk>\n",
                format,
                path.display(),
                d.target,
                d.bus
            ));
        }
        let mut nics = String::new();
        for (i, model) in spec.nics.iter().enumerate() {
            nics.push_str(&format!(
                "    <interface type='user'>\n      <mac address='52:54:00:00:{:02x}:{:02x}'/>\n      \
                 <model type='{model}'/>\n    </interface>\n",
                COUNTER.load(Ordering::SeqCst) % 256,
                i
            ));
        }
        let agent = if spec.agent_channel {
            "    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>\n"
        } else {
            ""
        };
        let serial = dir.path().join("serial.log");
        let os = if spec.kernel {
            format!(
                "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>console=ttyS0 panic=-1{}</cmdline>\n",
                self.kernel.display(),
                self.initrd.display(),
                if spec.cmdline_extra.is_empty() {
                    String::new()
                } else {
                    format!(" {}", spec.cmdline_extra)
                }
            )
        } else {
            String::new()
        };
        let xml = format!(
            "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>256</memory>\n  \
             <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n{os}    \
             <boot dev='hd'/>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n  \
             <on_poweroff>{}</on_poweroff>\n  <devices>\n{disks}{nics}{agent}    <serial type='file'>\n      \
             <source path='{}' append='on'/>\n    </serial>\n  </devices>\n</domain>\n",
            spec.on_poweroff,
            serial.display()
        );
        TestGuest {
            host: self,
            name,
            xml,
            serial,
            dir,
        }
    }
}

/// The format of a test disk image.
#[derive(Debug, Clone, Copy)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    fn ext(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

/// A disk of a test guest.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    pub bus: &'static str,
    pub target: &'static str,
    /// Format of a new empty image (ignored with `image`).
    pub format: ImageFormat,
    /// Size of a new empty image (ignored with `image`).
    pub size_mib: u32,
    /// A fixture image (`fixtures/images/<name>`) to copy as the disk instead of a new empty
    /// one; the declared format is the copy's own (from `qemu-img info`).
    pub image: Option<&'static str>,
}

impl DiskSpec {
    /// An empty disk of `size_mib` MiB.
    pub fn empty(
        bus: &'static str,
        target: &'static str,
        format: ImageFormat,
        size_mib: u32,
    ) -> DiskSpec {
        DiskSpec {
            bus,
            target,
            format,
            size_mib,
            image: None,
        }
    }

    /// A copy of the fixture image `fixtures/images/<name>`.
    pub fn fixture(bus: &'static str, target: &'static str, name: &'static str) -> DiskSpec {
        DiskSpec {
            bus,
            target,
            format: ImageFormat::Qcow2,
            size_mib: 0,
            image: Some(name),
        }
    }
}

/// The fixture image a ready guest boots from: Windows Server 2008 R2-like, viostor and netkvm
/// ready on i440fx.
pub const READY_IMAGE: &str = "mbr-sysreserved.qcow2";
/// The classic 0x7B trap: viostor installed but Start=3 and not bound to the virtio-blk id.
pub const NOT_READY_IMAGE: &str = "win2k8r2-start3.qcow2";

/// Copy `fixtures/images/<name>` into `dir` as disk number `index`; returns the copy and its
/// format as `qemu-img info` reports it. Fixtures with a backing file are refused (the copy
/// would point at the fixture tree).
pub fn copy_fixture_image(name: &str, dir: &Path, index: usize) -> (PathBuf, String) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/images")
        .join(name);
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&src)
        .output()
        .expect("run qemu-img info");
    assert!(out.status.success(), "qemu-img info {}", src.display());
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("qemu-img info JSON");
    assert!(
        info.get("backing-filename").is_none(),
        "{name} has a backing file; the harness copies stand-alone images only"
    );
    let format = info["format"]
        .as_str()
        .unwrap_or_else(|| panic!("qemu-img info {name}: no format"))
        .to_string();
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("img");
    let dst = dir.join(format!("disk{index}.{ext}"));
    fs::copy(&src, &dst)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
    (dst, format)
}

/// What a test guest has.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Boot the tiny guest's kernel; `false` = firmware only (no OS: ignores ACPI).
    pub kernel: bool,
    pub disks: Vec<DiskSpec>,
    /// NIC models (`e1000`, `virtio`, …), each a user-mode interface.
    pub nics: Vec<&'static str>,
    /// A `org.qemu.guest_agent.0` channel (the tiny guest runs an agent on it only with
    /// `vmtest.agent=N` in `cmdline_extra`).
    pub agent_channel: bool,
    /// `destroy`, `restart`, …
    pub on_poweroff: &'static str,
    /// More kernel command line for the tiny guest (tests/guest/build-tiny-guest.sh):
    /// `vmtest.on_virtio_boot=reboot` (a boot loop once its boot disk is on virtio),
    /// `vmtest.on_virtio_boot=panic`, `vmtest.agent=N` (a guest agent on the channel that answers
    /// for N seconds, 0: for ever; needs `agent_channel`).
    pub cmdline_extra: &'static str,
}

impl GuestSpec {
    /// The tiny guest with an IDE boot disk that is a copy of [`READY_IMAGE`] (its offline
    /// verdict: viostor and netkvm ready), a virtio data disk (raw) and an e1000 NIC.
    pub fn ide_e1000() -> GuestSpec {
        GuestSpec::ide_e1000_booting(READY_IMAGE)
    }

    /// Like [`GuestSpec::ide_e1000`] with a copy of the fixture `image` as the IDE boot disk.
    pub fn ide_e1000_booting(image: &'static str) -> GuestSpec {
        GuestSpec {
            kernel: true,
            disks: vec![
                DiskSpec::fixture("ide", "hda", image),
                DiskSpec::empty("virtio", "vdb", ImageFormat::Raw, 8),
            ],
            nics: vec!["e1000"],
            agent_channel: false,
            on_poweroff: "destroy",
            cmdline_extra: "",
        }
    }
}

/// A test domain, destroyed and undefined (and its files removed) on drop.
pub struct TestGuest<'h> {
    pub host: &'h Host,
    pub name: String,
    /// The XML it is defined from.
    pub xml: String,
    /// The serial console log (appended across boots).
    pub serial: PathBuf,
    dir: tempfile::TempDir,
}

/// A position in the serial log: markers of boots after it.
#[derive(Debug, Clone, Copy)]
pub struct SerialMark(u64);

/// What one boot of the tiny guest reported on its serial console.
#[derive(Debug, Clone, Default)]
pub struct BootReport {
    /// `vendor:device` in lower-case hex.
    pub pci: Vec<String>,
    /// Disk names (`sda`, `vda`).
    pub blocks: Vec<String>,
    /// `(interface, driver)`.
    pub nets: Vec<(String, String)>,
    pub ready: bool,
}

impl<'h> TestGuest<'h> {
    /// The directory holding the guest's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Define the domain from `self.xml`.
    pub fn define(&self) -> Domain {
        self.host
            .conn
            .define_domain_xml(&self.xml)
            .unwrap_or_else(|e| panic!("define {}: {e}", self.name))
    }

    /// The defined domain.
    pub fn domain(&self) -> Domain {
        self.host
            .conn
            .lookup_domain_by_name(&self.name)
            .unwrap_or_else(|e| panic!("lookup {}: {e}", self.name))
    }

    /// Define, start, and wait for the ready marker.
    pub fn define_and_boot(&self, timeout: Duration) -> (Domain, BootReport) {
        let dom = self.define();
        let mark = self.serial_mark();
        dom.create()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        let report = self.wait_boots(mark, 1, timeout).pop().unwrap_or_default();
        (dom, report)
    }

    /// The current end of the serial log.
    pub fn serial_mark(&self) -> SerialMark {
        SerialMark(fs::metadata(&self.serial).map(|m| m.len()).unwrap_or(0))
    }

    /// The boots reported after `mark` (complete or not).
    pub fn boots_since(&self, mark: SerialMark) -> Vec<BootReport> {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.serial) {
            if f.seek(SeekFrom::Start(mark.0)).is_ok() {
                let mut bytes = Vec::new();
                let _ = f.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        let mut boots: Vec<BootReport> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.trim_end_matches('\r').strip_prefix("VMTEST ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            match words.next() {
                Some("init") => boots.push(BootReport::default()),
                Some(kind) => {
                    let Some(b) = boots.last_mut() else { continue };
                    match kind {
                        "pci" => b.pci.extend(words.next().map(str::to_string)),
                        "block" => b.blocks.extend(words.next().map(str::to_string)),
                        "net" => {
                            if let (Some(i), Some(d)) = (words.next(), words.next()) {
                                b.nets.push((i.to_string(), d.to_string()));
                            }
                        }
                        "ready" => b.ready = true,
                        _ => {}
                    }
                }
                None => {}
            }
        }
        boots
    }

    /// Wait until `count` boots after `mark` reported ready; panics on timeout.
    pub fn wait_boots(&self, mark: SerialMark, count: usize, timeout: Duration) -> Vec<BootReport> {
        let start = Instant::now();
        loop {
            let boots = self.boots_since(mark);
            if boots.iter().filter(|b| b.ready).count() >= count {
                return boots;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{}: {count} ready boot(s) not seen within {timeout:?}; seen: {boots:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until a boot after `mark` is ready and satisfies `pred`; panics on timeout.
    pub fn wait_boot_where(
        &self,
        mark: SerialMark,
        timeout: Duration,
        pred: impl Fn(&BootReport) -> bool,
    ) -> BootReport {
        let start = Instant::now();
        loop {
            let boots = self.boots_since(mark);
            if let Some(b) = boots.iter().find(|b| b.ready && pred(b)) {
                return b.clone();
            }
            if start.elapsed() > timeout {
                panic!(
                    "{}: no matching ready boot within {timeout:?}; seen: {boots:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The persistent definition as the tool reads it.
    pub fn inactive_xml(&self) -> String {
        self.domain()
            .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE)
            .unwrap_or_else(|e| panic!("dumpxml {}: {e}", self.name))
    }

    /// The QEMU command line of the latest start (from `/var/log/libvirt/qemu/NAME.log`).
    pub fn last_qemu_command_line(&self) -> String {
        let log = qemu_log_path(&self.name);
        let text =
            fs::read_to_string(&log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
        let start = text.rfind("starting up").unwrap_or(0);
        text.get(start..).unwrap_or_default().to_string()
    }

    /// The `-device` JSON objects of the latest start.
    pub fn last_qemu_devices(&self) -> Vec<serde_json::Value> {
        qemu_devices(&self.last_qemu_command_line())
    }
}

/// The libvirt QEMU log of a domain.
pub fn qemu_log_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/libvirt/qemu/{name}.log"))
}

/// Parse the `-device '{json}'` arguments of a QEMU command line.
pub fn qemu_devices(cmdline: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut rest = cmdline;
    while let Some(i) = rest.find("-device '") {
        rest = &rest[i + "-device '".len()..];
        let Some(end) = rest.find('\'') else { break };
        if let Ok(v) = serde_json::from_str(&rest[..end]) {
            out.push(v);
        }
        rest = &rest[end..];
    }
    out
}

impl Drop for TestGuest<'_> {
    fn drop(&mut self) {
        if let Ok(dom) = self.host.conn.lookup_domain_by_name(&self.name) {
            if dom.is_active().unwrap_or(false) {
                let _ = dom.destroy();
            }
            let _ = dom.undefine_flags(
                virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM,
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "{} failed; its QEMU log was {}",
                self.name,
                qemu_log_path(&self.name).display()
            );
        } else {
            let _ = fs::remove_file(qemu_log_path(&self.name));
        }
    }
}
