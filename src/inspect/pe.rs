//! What a Windows driver file (`viostor.sys`, `vioscsi.sys`, …) really is, read lazily from the
//! guest's disk: a PE image for which machine, which subsystem, whether it carries an embedded
//! Authenticode signature and who signed it, and its file version.
//!
//! # Entry point
//!
//! [`read_driver`] takes the positioned reader that [`GuestFs::open`](super::guestfs::GuestFs::open)
//! gives for a file and reads only the structures it needs — never the whole file:
//!
//! 1. the MS-DOS header, the PE signature, the COFF file header, the optional header and the
//!    section table (one read of the first 4 KiB for any ordinary image);
//! 2. the attribute certificate table (at most [`MAX_CERTIFICATE_READ`] bytes);
//! 3. the resource directory path `RT_VERSION → first name → first language` and the start of
//!    the `VS_VERSIONINFO` it leads to (4 KiB hold the whole resource tree of an ordinary driver).
//!
//! 2 and 3 are one read when the resource data lies at most 16 KiB before the certificate table,
//! as in a linked-then-signed driver (`.rsrc`, `.reloc`, then the table); else one read each.
//! Every read goes through one small cache of windows, and the reads and bytes are counted
//! ([`DriverImage::cost`]): a real signed kernel driver of 94,144 bytes (two signatures,
//! 21,440-byte table) costs 2 reads and 27,584 bytes; a test driver of 1 MiB with a one-signer
//! table, 2 reads and 6,080 bytes.
//!
//! The result, [`DriverImage`], holds the facts; [`DriverImage::problems`] turns them into the
//! reasons Windows would not load the file as a boot-start driver for a given architecture
//! (wrong machine, not a native image, a section past the end of the file, no embedded
//! signature where one is required, a malformed certificate table), and
//! [`DriverImage::unread`] says what could not be read (I/O errors: the answer is then unknown,
//! not "bad"). [`PeError::is_io`] makes the same split for the errors of [`read_driver`] itself:
//! an I/O error means "unknown", any other error means "not a loadable PE image".
//!
//! How the verdict uses it, for a driver file at `path` of a Windows installation whose
//! `PROCESSOR_ARCHITECTURE` is `arch`:
//!
//! ```ignore
//! let expected = pe::Machine::for_windows_architecture(arch);
//! // 64-bit Windows Vista (6.0) and later: boot-start drivers need an embedded signature.
//! let signature_required = expected.is_some_and(|m| m.is_64_bit()) && nt_version >= (6, 0);
//! match pe::read_driver(&*fs.open(path)?) {
//!     Ok(image) => {
//!         let problems = image.problems(expected, signature_required); // each: a failed check
//!         let unknown = image.unread(); // non-empty: the signature or version is unknown
//!         let evidence = format!("{path}: {}", image.summary());
//!     }
//!     Err(e) if e.is_io() => { /* unknown: the disk could not be read */ }
//!     Err(e) => { /* failed: not a loadable PE image; `e` says what and at which offset */ }
//! }
//! ```
//!
//! # The signature is found, not validated
//!
//! The signer's name is read from the PKCS #7 `SignedData` of the certificate table (the
//! certificate named by the first `SignerInfo`'s issuer and serial number, its subject's common
//! name or, failing that, its organisation), and likewise for nested signatures (the
//! `1.3.6.1.4.1.311.2.4.1` unauthenticated attribute, where Windows puts a second signature, e.g.
//! Microsoft's attestation signature next to the vendor's). **Nothing is verified**: not the
//! image hash, not the signature, not the certificate chain, not revocation or time. A present,
//! well-formed signature says the file was signed by someone; whether Windows will accept that
//! signer is out of scope.
//!
//! # Sources
//!
//! - Microsoft, "PE Format" (learn.microsoft.com/windows/win32/debug/pe-format), sections
//!   "MS-DOS Stub (Image Only)", "Signature (Image Only)", "COFF File Header (Object and Image)"
//!   with "Machine Types" and "Characteristics", "Optional Header (Image Only)" with its
//!   "Standard Fields", "Windows-Specific Fields", "Windows Subsystem" and "Data Directories",
//!   "Section Table (Section Headers)", "The Attribute Certificate Table (Image Only)" and
//!   "The .rsrc Section" ("Resource Directory Table", "Resource Directory Entries",
//!   "Resource Data Entry").
//! - Microsoft, "Windows Authenticode Portable Executable Signature Format" (Authenticode_PE.docx),
//!   sections "Authenticode Signature Format", "SignedData", "SignerInfo"; the structures are
//!   those of RFC 2315 (PKCS #7 v1.5) §9.1 SignedData, §9.2 SignerInfo, §6.7
//!   IssuerAndSerialNumber; certificates RFC 5280 §4.1 (TBSCertificate) and §4.1.2.4 (Name,
//!   DirectoryString); the encoding ITU-T X.690 (DER); attribute types X.520 (commonName
//!   2.5.4.3, organizationName 2.5.4.10).
//! - Microsoft, "WIN_CERTIFICATE structure (wintrust.h)".
//! - Microsoft, "VS_VERSIONINFO structure" and "VS_FIXEDFILEINFO structure (verrsrc.h)";
//!   `RT_VERSION` = 16 (winuser.h, "Resource Types").
//! - Microsoft, "Kernel-Mode Code Signing Requirements" (Windows Vista and later): on 64-bit
//!   Windows "a kernel-mode boot-start driver must have an embedded Software Publisher
//!   Certificate (SPC) signature" — the reason [`DriverImage::problems`] takes
//!   `signature_required`.
//!
//! # Hostile input
//!
//! The file comes from a guest disk. Every count and offset is checked against the file size
//! before anything is read; the section count is capped at the loader's 96, resource
//! directories at [`MAX_RESOURCE_ENTRIES`] entries and the fixed three levels (a directory that
//! points back to itself ends at the third level), names at [`MAX_NAME_CHARS`] characters,
//! nested signatures at depth [`MAX_SIGNATURE_NESTING`], the whole read at [`MAX_TOTAL_READ`]
//! bytes in [`MAX_READS`] calls. No allocation is sized by a field beyond those caps, and no
//! input panics (a fuzz target, `fuzz/fuzz_targets/pe.rs`, holds it to that).

use std::fmt;
use std::io;

use serde::Serialize;

use crate::inspect::image::ReadAt;

/// The size of the first read and of every window the reader caches.
const WINDOW: u64 = 4096;
/// Windows kept by the reader's cache.
const CACHED_WINDOWS: usize = 4;
/// Most bytes of the certificate table read (real Authenticode tables of drivers are 8–25 KiB;
/// a larger one is still recognised as present, its signer is then reported as not read).
pub const MAX_CERTIFICATE_READ: u64 = 64 * 1024;
/// Most bytes one driver check may read in all (headers ≤ 16 KiB, resources and certificate
/// table ≤ 16 + 64 KiB, resource tree windows ≤ 32 KiB).
pub const MAX_TOTAL_READ: u64 = 160 * 1024;
/// Largest gap between the resource data and the certificate table that one read spans: a
/// linker puts `.rsrc` (and `.reloc`) last, the signer appends the table right after them.
const TAIL_GAP: u64 = 16 * 1024;
/// Most read calls one driver check may make.
pub const MAX_READS: u32 = 16;
/// "The Windows loader limits the number of sections to 96" (PE Format, COFF File Header).
pub const MAX_SECTIONS: u16 = 96;
/// Most entries of one resource directory table examined.
pub const MAX_RESOURCE_ENTRIES: usize = 512;
/// Most characters kept of a signer's name.
pub const MAX_NAME_CHARS: usize = 128;
/// Deepest nested signature followed (Windows nests one level: a second signature inside the
/// first one's unauthenticated attributes).
pub const MAX_SIGNATURE_NESTING: u8 = 2;
/// Most signers reported (the primary one and the nested ones).
const MAX_SIGNERS: usize = 8;
/// Most certificates of one SignedData examined to find the signer's.
const MAX_CERTIFICATES: usize = 64;
/// Most relative distinguished names of one Name examined.
const MAX_RDNS: usize = 64;

/// `RT_VERSION` (winuser.h, "Resource Types").
const RT_VERSION: u32 = 16;
/// `VS_FIXEDFILEINFO.dwSignature`.
const FIXED_FILE_INFO_SIGNATURE: u32 = 0xFEEF_04BD;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA` (PE Format, The Attribute Certificate Table).
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// `IMAGE_FILE_EXECUTABLE_IMAGE` (PE Format, Characteristics): "If this flag is not set, it
/// indicates a linker error."
const IMAGE_FILE_EXECUTABLE_IMAGE: u16 = 0x0002;

/// Why a file could not be read as a PE image, or what is wrong with one of its parts. Every
/// variant says which structure and at which byte offset of the file.
#[derive(Debug, thiserror::Error)]
pub enum PeError {
    /// The file has no bytes.
    #[error("empty file (0 bytes)")]
    Empty,
    /// Reading the file failed (the guest disk, not its content): the facts are unknown.
    #[error("cannot read {len} bytes of the {what} at offset {offset:#x}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        len: u64,
        #[source]
        source: io::Error,
    },
    /// A structure reaches past the end of the file.
    #[error("the {what} at offset {offset:#x} ({len} bytes) reaches past the end of the file ({size} bytes)")]
    Truncated {
        what: &'static str,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// The file does not start with the MS-DOS signature `MZ`.
    #[error("not a PE image: the file starts with {found:02x?}, not \"MZ\"")]
    NotMz { found: Vec<u8> },
    /// The offset at 0x3c does not lead to `PE\0\0`.
    #[error(
        "not a PE image: no \"PE\\0\\0\" signature at offset {offset:#x} (found {found:02x?})"
    )]
    NoPeSignature { offset: u64, found: Vec<u8> },
    /// More sections than the Windows loader accepts.
    #[error("the COFF file header at offset {offset:#x} declares {count} sections; the Windows loader accepts at most {limit}")]
    TooManySections { offset: u64, count: u16, limit: u16 },
    /// The optional header is missing, too small, or of an unknown kind.
    #[error("bad optional header at offset {offset:#x}: {reason}")]
    OptionalHeader { offset: u64, reason: String },
    /// The certificate table or the resource tree is inconsistent.
    #[error("bad {what} at offset {offset:#x}: {reason}")]
    Malformed {
        what: &'static str,
        offset: u64,
        reason: String,
    },
    /// The PKCS #7 data of the signature could not be walked (the signature is still present).
    #[error("cannot read the signer from the PKCS #7 data at offset {offset:#x}: {reason}")]
    Der { offset: u64, reason: String },
    /// The check would read more than its budget.
    #[error("reading the {what} at offset {offset:#x} would pass the limit of {limit}")]
    Limit {
        what: &'static str,
        offset: u64,
        limit: String,
    },
}

impl PeError {
    /// The error comes from reading — the disk failed, or the read budget refused the read —
    /// not from the file's content: whatever depends on it is unknown rather than wrong.
    pub fn is_io(&self) -> bool {
        matches!(self, PeError::Io { .. } | PeError::Limit { .. })
    }
}

/// `IMAGE_FILE_MACHINE_*`: the CPU an image was built for (PE Format, Machine Types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Machine(pub u16);

impl Machine {
    pub const I386: Machine = Machine(0x014c);
    pub const AMD64: Machine = Machine(0x8664);
    pub const ARM64: Machine = Machine(0xaa64);
    pub const ARMNT: Machine = Machine(0x01c4);
    pub const IA64: Machine = Machine(0x0200);

    /// The word for the machine, as Windows spells the architecture where it has one
    /// (`PROCESSOR_ARCHITECTURE`: x86, AMD64, IA64, ARM64, ARM).
    pub fn name(self) -> Option<&'static str> {
        // PE Format, "Machine Types".
        Some(match self.0 {
            0x0000 => "unknown",
            0x014c => "x86",
            0x8664 => "AMD64",
            0xaa64 => "ARM64",
            0xa641 => "ARM64EC",
            0xa64e => "ARM64X",
            0x01c0 => "ARM",
            0x01c2 => "Thumb",
            0x01c4 => "ARM",
            0x0200 => "IA64",
            0x0184 => "Alpha",
            0x0284 => "Alpha64",
            0x01d3 => "AM33",
            0x0ebc => "EFI byte code",
            0x6232 => "LoongArch32",
            0x6264 => "LoongArch64",
            0x9041 => "M32R",
            0x0266 => "MIPS16",
            0x0366 => "MIPS with FPU",
            0x0466 => "MIPS16 with FPU",
            0x01f0 => "PowerPC",
            0x01f1 => "PowerPC with FPU",
            0x0160 => "MIPS R3000 big-endian",
            0x0162 => "MIPS R3000",
            0x0166 => "MIPS R4000",
            0x0168 => "MIPS R10000",
            0x0169 => "MIPS WCE v2",
            0x5032 => "RISC-V 32",
            0x5064 => "RISC-V 64",
            0x5128 => "RISC-V 128",
            0x01a2 => "SH3",
            0x01a3 => "SH3 DSP",
            0x01a6 => "SH4",
            0x01a8 => "SH5",
            _ => return None,
        })
    }

    /// The machine of the kernel-mode images of a Windows installation, from its
    /// `PROCESSOR_ARCHITECTURE` (`Session Manager\Environment`; the values of
    /// SYSTEM_INFO.wProcessorArchitecture's names: x86, AMD64, IA64, ARM64, ARM). Case-insensitive.
    pub fn for_windows_architecture(architecture: &str) -> Option<Machine> {
        let a = architecture.trim();
        [
            ("x86", Machine::I386),
            ("AMD64", Machine::AMD64),
            ("ARM64", Machine::ARM64),
            ("IA64", Machine::IA64),
            ("ARM", Machine::ARMNT),
        ]
        .into_iter()
        .find(|(name, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, m)| m)
    }

    /// A 64-bit machine: on these, Windows Vista and later require boot-start drivers to carry
    /// an embedded signature (Kernel-Mode Code Signing Requirements).
    pub fn is_64_bit(self) -> bool {
        matches!(self.0, 0x8664 | 0xaa64 | 0x0200 | 0xa641 | 0xa64e)
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#06x})", self.0),
            None => write!(f, "unknown machine {:#06x}", self.0),
        }
    }
}

impl From<Machine> for String {
    fn from(m: Machine) -> String {
        m.to_string()
    }
}

/// `IMAGE_SUBSYSTEM_*` of the optional header (PE Format, Windows Subsystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Subsystem(pub u16);

impl Subsystem {
    /// "Device drivers and native Windows processes": what a kernel driver is linked as.
    pub const NATIVE: Subsystem = Subsystem(1);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "unknown",
            1 => "native",
            2 => "Windows GUI",
            3 => "Windows console",
            5 => "OS/2 console",
            7 => "POSIX console",
            8 => "native Win9x driver",
            9 => "Windows CE GUI",
            10 => "EFI application",
            11 => "EFI boot service driver",
            12 => "EFI runtime driver",
            13 => "EFI ROM",
            14 => "Xbox",
            16 => "Windows boot application",
            _ => return None,
        })
    }
}

impl fmt::Display for Subsystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "unknown subsystem {}", self.0),
        }
    }
}

impl From<Subsystem> for String {
    fn from(s: Subsystem) -> String {
        s.to_string()
    }
}

/// One row of the section table (PE Format, Section Table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The 8-byte name, without its padding (non-printable bytes replaced).
    pub name: String,
    pub virtual_address: u32,
    pub virtual_size: u32,
    pub raw_offset: u32,
    pub raw_size: u32,
}

impl Section {
    /// The file offset of `rva` when it lies in this section's raw data, with the bytes of raw
    /// data left from there.
    fn map(&self, rva: u32) -> Option<(u64, u64)> {
        let within = rva.checked_sub(self.virtual_address)?;
        if within >= self.raw_size {
            return None;
        }
        Some((
            u64::from(self.raw_offset) + u64::from(within),
            u64::from(self.raw_size - within),
        ))
    }
}

/// An embedded Authenticode signature: a `WIN_CERTIFICATE` of type `PKCS_SIGNED_DATA` inside
/// the file. Found, not validated (see the module documentation).
#[derive(Debug, Serialize)]
pub struct Signature {
    /// File offset of the attribute certificate table.
    pub offset: u64,
    /// `WIN_CERTIFICATE.dwLength`.
    pub length: u32,
    /// `WIN_CERTIFICATE.wRevision` (0x0200 today, 0x0100 legacy).
    pub revision: u16,
    /// Subject common name (or organisation) of the primary signer's certificate.
    pub signer: Option<String>,
    /// The signers of nested signatures, in order (e.g. Microsoft's attestation signature).
    pub nested_signers: Vec<String>,
    /// Why the signer's name could not be read, when it could not.
    #[serde(serialize_with = "display_opt")]
    pub signer_error: Option<PeError>,
}

/// What the certificate table holds.
#[derive(Debug, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum SignatureInfo {
    /// No certificate table (data directory 4 empty or absent): not signed in the file.
    Absent,
    /// An embedded PKCS #7 signature.
    Embedded(Signature),
    /// A certificate table Windows cannot use: outside the file, shorter than its header, of
    /// another certificate type.
    Malformed(#[serde(serialize_with = "display")] PeError),
    /// The table could not be read (I/O error or read budget): unknown.
    Unread(#[serde(serialize_with = "display")] PeError),
}

/// The file version from the `RT_VERSION` resource.
#[derive(Debug, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum VersionInfo {
    /// `VS_FIXEDFILEINFO.dwFileVersionMS/LS` as "a.b.c.d", with the product version.
    Found(FileVersion),
    /// No resource directory, or no `RT_VERSION` in it.
    Absent,
    /// The resource tree or the version structure is malformed.
    Malformed(#[serde(serialize_with = "display")] PeError),
    /// It could not be read (I/O error or read budget): unknown.
    Unread(#[serde(serialize_with = "display")] PeError),
}

/// The versions of `VS_FIXEDFILEINFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileVersion {
    /// dwFileVersionMS/LS: "a.b.c.d".
    pub file: String,
    /// dwProductVersionMS/LS: "a.b.c.d".
    pub product: String,
}

/// What checking one file cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReadCost {
    pub reads: u32,
    pub bytes: u64,
}

/// The facts of one driver file.
#[derive(Debug, Serialize)]
pub struct DriverImage {
    /// File size in bytes.
    pub size: u64,
    /// COFF `Machine`.
    pub machine: Machine,
    /// PE32+ (optional header magic 0x20b) rather than PE32 (0x10b).
    pub pe32_plus: bool,
    /// Optional header `Subsystem`.
    pub subsystem: Subsystem,
    /// COFF `Characteristics`.
    pub characteristics: u16,
    /// The section table (at most [`MAX_SECTIONS`] rows).
    pub sections: Vec<Section>,
    pub signature: SignatureInfo,
    pub version: VersionInfo,
    /// Reads and bytes this check took.
    pub cost: ReadCost,
}

/// A reason Windows would not load the file as a boot-start driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// Built for another CPU than the Windows installation's.
    WrongMachine { found: Machine, expected: Machine },
    /// PE32 on a 64-bit machine or PE32+ on a 32-bit one.
    WrongOptionalHeader { machine: Machine, pe32_plus: bool },
    /// Not linked for the native subsystem.
    NotNative { subsystem: Subsystem },
    /// `IMAGE_FILE_EXECUTABLE_IMAGE` is clear.
    NotExecutable { characteristics: u16 },
    /// A section's raw data ends past the end of the file (a truncated copy).
    SectionPastEnd { name: String, end: u64, size: u64 },
    /// No embedded signature where Windows requires one.
    Unsigned,
    /// A certificate table Windows cannot use.
    BadSignature { reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::WrongMachine { found, expected } => {
                write!(f, "built for {found}, the Windows installation is {expected}")
            }
            Problem::WrongOptionalHeader { machine, pe32_plus } => write!(
                f,
                "a {} optional header on a {machine} image",
                if *pe32_plus { "PE32+" } else { "PE32" }
            ),
            Problem::NotNative { subsystem } => {
                write!(f, "subsystem {subsystem}, not native (1) as a kernel driver is")
            }
            Problem::NotExecutable { characteristics } => write!(
                f,
                "not marked executable (COFF characteristics {characteristics:#06x} lack IMAGE_FILE_EXECUTABLE_IMAGE)"
            ),
            Problem::SectionPastEnd { name, end, size } => write!(
                f,
                "section {name:?} ends at byte {end}, past the end of the file ({size} bytes): a truncated copy"
            ),
            Problem::Unsigned => write!(
                f,
                "no embedded signature (certificate table empty): 64-bit Windows does not load an unsigned boot-start driver"
            ),
            Problem::BadSignature { reason } => write!(f, "unusable certificate table: {reason}"),
        }
    }
}

impl DriverImage {
    /// Why Windows would not load this file as a boot-start driver of an installation whose
    /// kernel runs on `expected` (None: not known, the machine is not checked), requiring an
    /// embedded signature when `signature_required` (64-bit Windows Vista and later: see
    /// [`Machine::is_64_bit`]). Empty when nothing is wrong; what could not be read is in
    /// [`DriverImage::unread`], not here.
    pub fn problems(&self, expected: Option<Machine>, signature_required: bool) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(expected) = expected {
            if self.machine != expected {
                out.push(Problem::WrongMachine {
                    found: self.machine,
                    expected,
                });
            }
        }
        // PE Format, Optional Header: PE32+ "allow[s] for a 64-bit address space"; a 64-bit
        // Windows machine's images are PE32+, a 32-bit one's PE32 (checked for the machines
        // Windows runs on only).
        let wants_plus = match self.machine.0 {
            0x014c | 0x01c0 | 0x01c2 | 0x01c4 => Some(false),
            0x8664 | 0xaa64 | 0x0200 | 0xa641 | 0xa64e => Some(true),
            _ => None,
        };
        if let Some(wants_plus) = wants_plus {
            if wants_plus != self.pe32_plus {
                out.push(Problem::WrongOptionalHeader {
                    machine: self.machine,
                    pe32_plus: self.pe32_plus,
                });
            }
        }
        if self.subsystem != Subsystem::NATIVE {
            out.push(Problem::NotNative {
                subsystem: self.subsystem,
            });
        }
        if self.characteristics & IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
            out.push(Problem::NotExecutable {
                characteristics: self.characteristics,
            });
        }
        for s in &self.sections {
            let end = u64::from(s.raw_offset) + u64::from(s.raw_size);
            if s.raw_size > 0 && end > self.size {
                out.push(Problem::SectionPastEnd {
                    name: s.name.clone(),
                    end,
                    size: self.size,
                });
            }
        }
        match &self.signature {
            SignatureInfo::Absent if signature_required => out.push(Problem::Unsigned),
            SignatureInfo::Malformed(e) if signature_required => out.push(Problem::BadSignature {
                reason: e.to_string(),
            }),
            _ => {}
        }
        out
    }

    /// What could not be read because the disk failed (each a sentence): with these, a check
    /// that depends on them is unknown.
    pub fn unread(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let SignatureInfo::Unread(e) = &self.signature {
            out.push(format!("certificate table: {e}"));
        }
        if let VersionInfo::Unread(e) = &self.version {
            out.push(format!("version resource: {e}"));
        }
        out
    }

    /// The primary signer's name, when the signature is there and its name could be read.
    pub fn signer(&self) -> Option<&str> {
        match &self.signature {
            SignatureInfo::Embedded(s) => s.signer.as_deref(),
            _ => None,
        }
    }

    /// An embedded signature is present (well-formed table of type PKCS_SIGNED_DATA).
    pub fn is_signed(&self) -> bool {
        matches!(self.signature, SignatureInfo::Embedded(_))
    }

    /// The file version "a.b.c.d", when the version resource was found.
    pub fn file_version(&self) -> Option<&str> {
        match &self.version {
            VersionInfo::Found(v) => Some(&v.file),
            _ => None,
        }
    }

    /// One line for evidence: "PE32+ AMD64 (0x8664) native (1) image, 94144 bytes, signed by
    /// …, version …".
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {} {} image, {} bytes",
            if self.pe32_plus { "PE32+" } else { "PE32" },
            self.machine,
            self.subsystem,
            self.size
        );
        match &self.signature {
            SignatureInfo::Absent => s.push_str(", no embedded signature"),
            SignatureInfo::Embedded(sig) => {
                match &sig.signer {
                    Some(name) => s.push_str(&format!(", signed by {name:?}")),
                    None => s.push_str(", signed (signer not read)"),
                }
                if !sig.nested_signers.is_empty() {
                    let names: Vec<String> = sig
                        .nested_signers
                        .iter()
                        .map(|n| format!("{n:?}"))
                        .collect();
                    s.push_str(&format!(" and {}", names.join(", ")));
                }
                s.push_str(" (chain not validated)");
            }
            SignatureInfo::Malformed(e) => s.push_str(&format!(", bad certificate table ({e})")),
            SignatureInfo::Unread(e) => s.push_str(&format!(", certificate table unread ({e})")),
        }
        match &self.version {
            VersionInfo::Found(v) => s.push_str(&format!(", file version {}", v.file)),
            VersionInfo::Absent => s.push_str(", no version resource"),
            VersionInfo::Malformed(e) => s.push_str(&format!(", bad version resource ({e})")),
            VersionInfo::Unread(e) => s.push_str(&format!(", version resource unread ({e})")),
        }
        s
    }
}

fn display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<S: serde::Serializer, T: fmt::Display>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Read the facts of the driver file behind `file` (its size is `file.size()`), reading only
/// the headers, the certificate table and the version resource.
///
/// An `Err` means the file is not a loadable PE image (or, when [`PeError::is_io`], that it
/// could not be read); problems in the signature or version parts do not fail the call, they
/// are recorded in [`DriverImage::signature`] and [`DriverImage::version`].
pub fn read_driver(file: &dyn ReadAt) -> Result<DriverImage, PeError> {
    let mut src = Source::new(file);
    let (mut image, directories) = read_headers(&mut src)?;
    prefetch_tail(&mut src, &image, &directories);
    image.signature = match read_signature(&mut src, directories.certificate) {
        Ok(s) => s,
        Err(e) if e.is_io() => SignatureInfo::Unread(e),
        Err(e) => SignatureInfo::Malformed(e),
    };
    image.version = match read_version(&mut src, &image, directories.resource) {
        Ok(Some(v)) => VersionInfo::Found(v),
        Ok(None) => VersionInfo::Absent,
        Err(e) if e.is_io() => VersionInfo::Unread(e),
        Err(e) => VersionInfo::Malformed(e),
    };
    image.cost = src.cost;
    Ok(image)
}

/// One read for the resource data and the certificate table when they lie close together at
/// the end of the file, as they do in an ordinary signed driver; the later reads then come from
/// the cache. Nothing is decided here: a failed read is repeated (and reported) by the part that
/// needs it.
fn prefetch_tail(src: &mut Source<'_>, image: &DriverImage, directories: &Directories) {
    let (Some((cert_at, cert_size)), Some((rva, _))) =
        (directories.certificate, directories.resource)
    else {
        return;
    };
    let Some((root, _)) = image.sections.iter().find_map(|s| s.map(rva)) else {
        return;
    };
    let cert_at = u64::from(cert_at);
    let end = cert_at.saturating_add(u64::from(cert_size).min(MAX_CERTIFICATE_READ));
    if root < cert_at && cert_at - root <= TAIL_GAP && end <= src.size {
        let _ = src.get(root, end - root, "resource data and certificate table");
    }
}

/// The two data directories read after the headers: (RVA or file offset, size), when not empty.
struct Directories {
    resource: Option<(u32, u32)>,
    certificate: Option<(u32, u32)>,
}

/// Positioned reads through a small cache of windows, counted and budgeted.
struct Source<'a> {
    file: &'a dyn ReadAt,
    size: u64,
    windows: Vec<(u64, Vec<u8>)>,
    cost: ReadCost,
}

impl<'a> Source<'a> {
    fn new(file: &'a dyn ReadAt) -> Source<'a> {
        Source {
            file,
            size: file.size(),
            windows: Vec::new(),
            cost: ReadCost::default(),
        }
    }

    /// `len` bytes at `offset`, from the cache or from one read of at least a window.
    fn get(&mut self, offset: u64, len: u64, what: &'static str) -> Result<&[u8], PeError> {
        if len == 0 && offset <= self.size {
            return Ok(&[]);
        }
        let end =
            offset
                .checked_add(len)
                .filter(|&e| e <= self.size)
                .ok_or(PeError::Truncated {
                    what,
                    offset,
                    len,
                    size: self.size,
                })?;
        let hit = self
            .windows
            .iter()
            .position(|(start, data)| *start <= offset && end <= *start + data.len() as u64);
        let index = match hit {
            Some(i) => i,
            None => {
                let want = len.max(WINDOW).min(self.size - offset);
                if self.cost.reads >= MAX_READS {
                    return Err(PeError::Limit {
                        what,
                        offset,
                        limit: format!("{MAX_READS} reads"),
                    });
                }
                if self.cost.bytes + want > MAX_TOTAL_READ {
                    return Err(PeError::Limit {
                        what,
                        offset,
                        limit: format!("{MAX_TOTAL_READ} bytes"),
                    });
                }
                // `want` ≤ MAX_TOTAL_READ (checked above): a bounded allocation.
                let mut data = vec![0u8; want as usize];
                self.cost.reads += 1;
                self.cost.bytes += want;
                self.file
                    .read_exact_at(&mut data, offset)
                    .map_err(|source| PeError::Io {
                        what,
                        offset,
                        len: want,
                        source,
                    })?;
                if self.windows.len() >= CACHED_WINDOWS {
                    self.windows.remove(0);
                }
                self.windows.push((offset, data));
                self.windows.len() - 1
            }
        };
        let (start, data) = &self.windows[index];
        let from = (offset - start) as usize;
        Ok(&data[from..from + len as usize])
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// MS-DOS header, PE signature, COFF file header, optional header, section table.
fn read_headers(src: &mut Source<'_>) -> Result<(DriverImage, Directories), PeError> {
    if src.size == 0 {
        return Err(PeError::Empty);
    }
    // PE Format, "MS-DOS Stub (Image Only)": the image starts with the MS-DOS header ("MZ");
    // "at location 0x3c, the stub has the file offset to the PE signature".
    let head = src.get(0, src.size.min(2), "MS-DOS header")?;
    if head != b"MZ" {
        return Err(PeError::NotMz {
            found: head.to_vec(),
        });
    }
    let dos = src.get(0, 0x40, "MS-DOS header")?;
    let pe = u64::from(u32_at(dos, 0x3c));

    // PE Format, "Signature (Image Only)": "PE\0\0" at that offset, then the COFF file header
    // (20 bytes: Machine, NumberOfSections, TimeDateStamp, PointerToSymbolTable,
    // NumberOfSymbols, SizeOfOptionalHeader, Characteristics).
    let signature = src.get(pe, 4, "PE signature")?;
    if signature != b"PE\0\0" {
        return Err(PeError::NoPeSignature {
            offset: pe,
            found: signature.to_vec(),
        });
    }
    let coff_at = pe + 4;
    let coff = src.get(coff_at, 20, "COFF file header")?;
    let machine = Machine(u16_at(coff, 0));
    let sections = u16_at(coff, 2);
    let optional_size = u16_at(coff, 16);
    let characteristics = u16_at(coff, 18);
    if sections > MAX_SECTIONS {
        return Err(PeError::TooManySections {
            offset: coff_at,
            count: sections,
            limit: MAX_SECTIONS,
        });
    }

    // PE Format, "Optional Header (Image Only)": magic 0x10b = PE32, 0x20b = PE32+; the
    // Windows-specific fields up to NumberOfRvaAndSizes end at 96 (PE32) / 112 (PE32+), the data
    // directories follow, never past SizeOfOptionalHeader.
    let opt_at = coff_at + 20;
    let opt_size = u64::from(optional_size);
    if opt_size < 2 {
        return Err(PeError::OptionalHeader {
            offset: opt_at,
            reason: format!("SizeOfOptionalHeader is {opt_size}: an image needs one"),
        });
    }
    // Only the fields and the 16 data directories are read (at most 112 + 128 bytes).
    let opt = src
        .get(opt_at, opt_size.min(112 + 16 * 8), "optional header")?
        .to_vec();
    let magic = u16_at(&opt, 0);
    let (pe32_plus, fixed) = match magic {
        0x10b => (false, 96usize),
        0x20b => (true, 112usize),
        other => {
            return Err(PeError::OptionalHeader {
                offset: opt_at,
                reason: format!("magic {other:#06x} is neither PE32 (0x10b) nor PE32+ (0x20b)"),
            })
        }
    };
    if opt.len() < fixed {
        return Err(PeError::OptionalHeader {
            offset: opt_at,
            reason: format!(
                "SizeOfOptionalHeader is {opt_size}, less than the {fixed} bytes of the {} fields",
                if pe32_plus { "PE32+" } else { "PE32" }
            ),
        });
    }
    // Windows-specific fields: Subsystem at 68, NumberOfRvaAndSizes at 92 / 108.
    let subsystem = Subsystem(u16_at(&opt, 68));
    let rva_count = u32_at(&opt, fixed - 4) as usize;
    let directories = rva_count.min(16).min((opt.len() - fixed) / 8);
    let directory = |index: usize| -> Option<(u32, u32)> {
        (index < directories).then(|| {
            let at = fixed + 8 * index;
            (u32_at(&opt, at), u32_at(&opt, at + 4))
        })
    };
    // Data directory 2: Resource Table; 4: Certificate Table ("the first field of this entry,
    // which is normally an RVA, is a file pointer instead").
    let directories = Directories {
        resource: directory(2).filter(|&(rva, size)| rva != 0 || size != 0),
        certificate: directory(4).filter(|&(at, size)| at != 0 || size != 0),
    };

    // PE Format, "Section Table (Section Headers)": right after the optional header (as sized
    // by SizeOfOptionalHeader), 40 bytes per section.
    let table_at = opt_at + opt_size;
    let table = src
        .get(table_at, u64::from(sections) * 40, "section table")?
        .to_vec();
    let sections = table
        .chunks_exact(40)
        .map(|row| Section {
            name: row[..8]
                .iter()
                .take_while(|&&b| b != 0)
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect(),
            virtual_size: u32_at(row, 8),
            virtual_address: u32_at(row, 12),
            raw_size: u32_at(row, 16),
            raw_offset: u32_at(row, 20),
        })
        .collect();

    let image = DriverImage {
        size: src.size,
        machine,
        pe32_plus,
        subsystem,
        characteristics,
        sections,
        signature: SignatureInfo::Absent,
        version: VersionInfo::Absent,
        cost: ReadCost::default(),
    };
    Ok((image, directories))
}

/// PE Format, "The Attribute Certificate Table (Image Only)": the table lies at a file offset,
/// inside the file; its first entry is a WIN_CERTIFICATE (dwLength, wRevision,
/// wCertificateType, bCertificate), and Authenticode uses type WIN_CERT_TYPE_PKCS_SIGNED_DATA
/// with a PKCS #7 SignedData in bCertificate.
fn read_signature(
    src: &mut Source<'_>,
    directory: Option<(u32, u32)>,
) -> Result<SignatureInfo, PeError> {
    const WHAT: &str = "attribute certificate table";
    let Some((at, size)) = directory else {
        return Ok(SignatureInfo::Absent);
    };
    let (offset, size) = (u64::from(at), u64::from(size));
    if offset.checked_add(size).is_none_or(|end| end > src.size) {
        return Err(PeError::Malformed {
            what: WHAT,
            offset,
            reason: format!(
                "the table ({size} bytes) reaches past the end of the file ({} bytes)",
                src.size
            ),
        });
    }
    if size < 8 {
        return Err(PeError::Malformed {
            what: WHAT,
            offset,
            reason: format!("{size} bytes, less than a WIN_CERTIFICATE header (8)"),
        });
    }
    let read = size.min(MAX_CERTIFICATE_READ);
    let data = src.get(offset, read, WHAT)?;
    let length = u32_at(data, 0);
    let revision = u16_at(data, 4);
    let kind = u16_at(data, 6);
    if length < 8 || u64::from(length) > size {
        return Err(PeError::Malformed {
            what: WHAT,
            offset,
            reason: format!(
                "WIN_CERTIFICATE dwLength {length} does not fit the table's {size} bytes"
            ),
        });
    }
    if kind != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
        return Err(PeError::Malformed {
            what: WHAT,
            offset,
            reason: format!(
                "WIN_CERTIFICATE type {kind:#06x}, not PKCS_SIGNED_DATA (0x0002): no Authenticode signature"
            ),
        });
    }
    let blob_at = offset + 8;
    let blob_len = u64::from(length) - 8;
    let mut signature = Signature {
        offset,
        length,
        revision,
        signer: None,
        nested_signers: Vec::new(),
        signer_error: None,
    };
    if blob_len > read - 8 {
        signature.signer_error = Some(PeError::Limit {
            what: "PKCS #7 SignedData",
            offset: blob_at,
            limit: format!("{MAX_CERTIFICATE_READ} bytes (it has {blob_len})"),
        });
        return Ok(SignatureInfo::Embedded(signature));
    }
    let blob = &data[8..8 + blob_len as usize];
    let mut signers = Vec::new();
    match signers_of(blob, 0, &mut signers) {
        Ok(()) => {}
        Err(e) => signature.signer_error = Some(e.at(blob_at)),
    }
    let mut signers = signers.into_iter();
    signature.signer = signers.next().flatten();
    signature.nested_signers = signers.flatten().collect();
    if signature.signer.is_none() && signature.signer_error.is_none() {
        signature.signer_error = Some(PeError::Der {
            offset: blob_at,
            reason: "the signer's certificate is not in the SignedData".into(),
        });
    }
    Ok(SignatureInfo::Embedded(signature))
}

/// The `RT_VERSION` resource: type 16 → its first name → its first language → a Resource
/// Data Entry → `VS_VERSIONINFO` (PE Format, "The .rsrc Section"; "VS_VERSIONINFO structure").
fn read_version(
    src: &mut Source<'_>,
    image: &DriverImage,
    directory: Option<(u32, u32)>,
) -> Result<Option<FileVersion>, PeError> {
    const WHAT: &str = "resource directory";
    let Some((rva, _)) = directory else {
        return Ok(None);
    };
    let map = |rva: u32| image.sections.iter().find_map(|s| s.map(rva));
    let Some((root, room)) = map(rva) else {
        return Err(PeError::Malformed {
            what: WHAT,
            offset: u64::from(rva),
            reason: format!("RVA {rva:#x} lies in no section's data"),
        });
    };
    // "Offsets are relative to the address in the IMAGE_DIRECTORY_ENTRY_RESOURCE DataDirectory":
    // every table and data entry must lie in the section data from `root` on (`room` bytes).
    let mut table = 0u32;
    // Three levels by convention (Type, Name, Language): a directory that points back to an
    // upper one is met at a level where a data entry is expected, and refused there.
    for level in 0..3 {
        let table_at = root + u64::from(table);
        if u64::from(table) + 16 > room {
            return Err(PeError::Malformed {
                what: WHAT,
                offset: table_at,
                reason: format!(
                    "a directory table at offset {table:#x} of the resource data lies past its end"
                ),
            });
        }
        let header = src.get(table_at, 16, WHAT)?;
        let named = usize::from(u16_at(header, 12));
        let ids = usize::from(u16_at(header, 14));
        let count = named + ids;
        if count > MAX_RESOURCE_ENTRIES {
            return Err(PeError::Malformed {
                what: WHAT,
                offset: table_at,
                reason: format!(
                    "{count} entries in one directory table, more than the {MAX_RESOURCE_ENTRIES} examined"
                ),
            });
        }
        if u64::from(table) + 16 + 8 * count as u64 > room {
            return Err(PeError::Malformed {
                what: WHAT,
                offset: table_at,
                reason: format!("its {count} entries reach past the end of the resource data"),
            });
        }
        let entries = src.get(table_at + 16, 8 * count as u64, WHAT)?;
        // Level 0 (types): the ID entry RT_VERSION (ID entries follow the name entries). Levels
        // 1 and 2 (name, language): the first entry, as the version API takes the first one.
        let chosen = if level == 0 {
            (named..count).find(|&i| u32_at(entries, 8 * i) == RT_VERSION)
        } else {
            (count > 0).then_some(0)
        };
        let Some(i) = chosen else {
            return if level == 0 {
                Ok(None)
            } else {
                Err(PeError::Malformed {
                    what: WHAT,
                    offset: table_at,
                    reason: "an empty directory table under RT_VERSION".into(),
                })
            };
        };
        let target = u32_at(entries, 8 * i + 4);
        let is_directory = target & 0x8000_0000 != 0;
        let target = target & 0x7fff_ffff;
        if level < 2 {
            if !is_directory {
                return Err(PeError::Malformed {
                    what: WHAT,
                    offset: table_at,
                    reason: format!(
                        "level {} entry points to a data entry where a directory table is expected",
                        level + 1
                    ),
                });
            }
            table = target;
            continue;
        }
        if is_directory {
            return Err(PeError::Malformed {
                what: WHAT,
                offset: table_at,
                reason: "a fourth directory level under RT_VERSION (a cycle or a deeper tree)"
                    .into(),
            });
        }
        // Resource Data Entry: Data RVA, Size, Codepage, Reserved.
        let entry_at = root + u64::from(target);
        if u64::from(target) + 16 > room {
            return Err(PeError::Malformed {
                what: WHAT,
                offset: entry_at,
                reason: "the data entry lies past the end of the resource data".into(),
            });
        }
        let entry = src.get(entry_at, 16, "resource data entry")?;
        let data_rva = u32_at(entry, 0);
        let data_size = u64::from(u32_at(entry, 4));
        let Some((data_at, data_room)) = map(data_rva) else {
            return Err(PeError::Malformed {
                what: "resource data entry",
                offset: entry_at,
                reason: format!("the version data's RVA {data_rva:#x} lies in no section's data"),
            });
        };
        return parse_version(src, data_at, data_size.min(data_room)).map(Some);
    }
    // Not reached: the third level returns in every case.
    Err(PeError::Malformed {
        what: WHAT,
        offset: root,
        reason: "no data entry within three levels".into(),
    })
}

/// `VS_VERSIONINFO`: wLength, wValueLength, wType, szKey = L"VS_VERSION_INFO", padding to a
/// 32-bit boundary, then `VS_FIXEDFILEINFO` (dwSignature 0xFEEF04BD, dwStrucVersion,
/// dwFileVersionMS/LS, dwProductVersionMS/LS, …).
fn parse_version(src: &mut Source<'_>, at: u64, size: u64) -> Result<FileVersion, PeError> {
    const WHAT: &str = "VS_VERSIONINFO";
    const KEY_END: usize = 6 + 32; // header + 16 UTF-16 units including the terminator
    const VALUE_AT: usize = 40; // KEY_END rounded up to 4
    const NEEDED: usize = VALUE_AT + 24; // through dwProductVersionLS
    if size < NEEDED as u64 {
        return Err(PeError::Malformed {
            what: WHAT,
            offset: at,
            reason: format!(
                "{size} bytes of version data, less than the {NEEDED} that hold the file version"
            ),
        });
    }
    let data = src.get(at, NEEDED as u64, WHAT)?;
    let length = usize::from(u16_at(data, 0));
    let value_length = usize::from(u16_at(data, 2));
    let key: Vec<u16> = (6..KEY_END).step_by(2).map(|i| u16_at(data, i)).collect();
    let expected: Vec<u16> = "VS_VERSION_INFO\0".encode_utf16().collect();
    if key != expected {
        return Err(PeError::Malformed {
            what: WHAT,
            offset: at,
            reason: format!(
                "szKey is {:?}, not \"VS_VERSION_INFO\"",
                String::from_utf16_lossy(&key).trim_end_matches('\0')
            ),
        });
    }
    if value_length < 52 || length < VALUE_AT + 52 {
        return Err(PeError::Malformed {
            what: WHAT,
            offset: at,
            reason: format!(
                "wLength {length} / wValueLength {value_length} leave no room for a VS_FIXEDFILEINFO (52 bytes)"
            ),
        });
    }
    let fixed = &data[VALUE_AT..];
    let signature = u32_at(fixed, 0);
    if signature != FIXED_FILE_INFO_SIGNATURE {
        return Err(PeError::Malformed {
            what: "VS_FIXEDFILEINFO",
            offset: at + VALUE_AT as u64,
            reason: format!("dwSignature {signature:#010x}, not 0xfeef04bd"),
        });
    }
    let quad =
        |ms: u32, ls: u32| format!("{}.{}.{}.{}", ms >> 16, ms & 0xffff, ls >> 16, ls & 0xffff);
    Ok(FileVersion {
        file: quad(u32_at(fixed, 8), u32_at(fixed, 12)),
        product: quad(u32_at(fixed, 16), u32_at(fixed, 20)),
    })
}

// ---- A bounded DER walker, just enough for SignedData → SignerInfo → certificate subject ----

/// An error inside the PKCS #7 blob, at an offset relative to the blob's start.
#[derive(Debug)]
struct DerError {
    offset: usize,
    reason: String,
}

impl DerError {
    fn at(self, blob_at: u64) -> PeError {
        PeError::Der {
            offset: blob_at + self.offset as u64,
            reason: self.reason,
        }
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
/// `[0]` constructed (context-specific): the explicit content of ContentInfo, SignedData's
/// certificates, a certificate's version, SignerInfo's authenticated attributes.
const CONTEXT_0: u8 = 0xa0;
/// `[1]` constructed: SignedData's crls, SignerInfo's unauthenticated attributes.
const CONTEXT_1: u8 = 0xa1;
/// 1.2.840.113549.1.7.2 (pkcs7-signedData).
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 1.3.6.1.4.1.311.2.4.1 (SPC_NESTED_SIGNATURE: a further SignedData as an unauthenticated
/// attribute of the first SignerInfo).
const OID_NESTED_SIGNATURE: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x04, 0x01];
/// 2.5.4.3 (id-at-commonName).
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.4.10 (id-at-organizationName).
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// One DER element: its tag, its whole encoding and its content, with the content's offset in
/// the blob.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    raw: &'a [u8],
    body: &'a [u8],
    body_at: usize,
}

impl<'a> Tlv<'a> {
    fn children(&self) -> Der<'a> {
        Der {
            data: self.body,
            pos: 0,
            base: self.body_at,
        }
    }
}

/// The elements of one DER content, in order.
struct Der<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Der<'a> {
    fn fail(&self, reason: impl Into<String>) -> DerError {
        DerError {
            offset: self.base + self.pos,
            reason: reason.into(),
        }
    }

    /// The next element, `None` at the end. X.690 §8.1: identifier octet (low-tag-number form
    /// only), then a definite length (short form, or long form in 1–4 octets); the indefinite
    /// form is BER, not DER, and refused.
    fn next(&mut self) -> Result<Option<Tlv<'a>>, DerError> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let rest = &self.data[self.pos..];
        let tag = rest[0];
        if tag & 0x1f == 0x1f {
            return Err(self.fail(format!("tag {tag:#04x} uses the high-tag-number form")));
        }
        let first = *rest
            .get(1)
            .ok_or_else(|| self.fail("the element ends inside its length"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2usize)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(self.fail("indefinite length (BER, not DER)"));
            }
            if n > 4 {
                return Err(self.fail(format!("a length of {n} octets")));
            }
            let octets = rest
                .get(2..2 + n)
                .ok_or_else(|| self.fail("the element ends inside its length"))?;
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + n)
        };
        let total = header
            .checked_add(len)
            .filter(|&t| t <= rest.len())
            .ok_or_else(|| {
                self.fail(format!(
                    "an element of {len} bytes where {} remain",
                    rest.len() - header.min(rest.len())
                ))
            })?;
        let tlv = Tlv {
            tag,
            raw: &rest[..total],
            body: &rest[header..total],
            body_at: self.base + self.pos + header,
        };
        self.pos += total;
        Ok(Some(tlv))
    }

    /// The next element, which must have tag `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, DerError> {
        match self.next()? {
            Some(t) if t.tag == tag => Ok(t),
            Some(t) => Err(DerError {
                offset: t.body_at - (t.raw.len() - t.body.len()),
                reason: format!("{what}: tag {:#04x} where {tag:#04x} is expected", t.tag),
            }),
            None => Err(self.fail(format!("{what} is missing"))),
        }
    }
}

/// The signer names of the SignedData in `blob` (a ContentInfo), then of its nested
/// signatures, appended to `out` (`None` for a signer whose certificate is not included).
/// RFC 2315 §9.1: SignedData ::= SEQUENCE { version, digestAlgorithms SET, contentInfo,
/// certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos SET }; the
/// Authenticode specification ("SignedData") has exactly one SignerInfo.
fn signers_of(blob: &[u8], depth: u8, out: &mut Vec<Option<String>>) -> Result<(), DerError> {
    let mut top = Der {
        data: blob,
        pos: 0,
        base: 0,
    };
    signers_of_content_info(&mut top, depth, out)
}

fn signers_of_content_info(
    der: &mut Der<'_>,
    depth: u8,
    out: &mut Vec<Option<String>>,
) -> Result<(), DerError> {
    let content_info = der.expect(SEQUENCE, "ContentInfo")?;
    let mut ci = content_info.children();
    let kind = ci.expect(OID, "ContentInfo contentType")?;
    if kind.body != OID_SIGNED_DATA {
        return Err(DerError {
            offset: kind.body_at,
            reason: "the content type is not pkcs7-signedData (1.2.840.113549.1.7.2)".into(),
        });
    }
    let explicit = ci.expect(CONTEXT_0, "ContentInfo content [0]")?;
    let signed_data = explicit.children().expect(SEQUENCE, "SignedData")?;
    let mut sd = signed_data.children();
    sd.expect(INTEGER, "SignedData version")?;
    sd.expect(SET, "SignedData digestAlgorithms")?;
    sd.expect(SEQUENCE, "SignedData contentInfo")?;
    let mut certificates = None;
    let mut next = sd.next()?;
    if let Some(t) = next.filter(|t| t.tag == CONTEXT_0) {
        certificates = Some(t);
        next = sd.next()?;
    }
    if next.is_some_and(|t| t.tag == CONTEXT_1) {
        next = sd.next()?;
    }
    let signer_infos = match next {
        Some(t) if t.tag == SET => t,
        _ => return Err(sd.fail("SignedData signerInfos (SET) is missing")),
    };
    // RFC 2315 §9.2: SignerInfo ::= SEQUENCE { version, issuerAndSerialNumber, digestAlgorithm,
    // authenticatedAttributes [0] IMPLICIT OPTIONAL, digestEncryptionAlgorithm, encryptedDigest,
    // unauthenticatedAttributes [1] IMPLICIT OPTIONAL }.
    let signer_info = signer_infos.children().expect(SEQUENCE, "SignerInfo")?;
    let mut si = signer_info.children();
    si.expect(INTEGER, "SignerInfo version")?;
    // RFC 2315 §6.7: IssuerAndSerialNumber ::= SEQUENCE { issuer Name, serialNumber INTEGER }.
    let sid = si
        .next()?
        .ok_or_else(|| si.fail("SignerInfo issuerAndSerialNumber is missing"))?;
    if sid.tag != SEQUENCE {
        return Err(DerError {
            offset: sid.body_at,
            reason: format!(
                "the signer is identified by tag {:#04x}, not by issuer and serial number",
                sid.tag
            ),
        });
    }
    let mut ias = sid.children();
    let issuer = ias.expect(SEQUENCE, "issuer")?;
    let serial = ias.expect(INTEGER, "serialNumber")?;
    let name = match certificates {
        Some(certs) => signer_name(&certs, issuer.raw, serial.body)?,
        None => None,
    };
    if out.len() < MAX_SIGNERS {
        out.push(name);
    }

    // Nested signatures: unauthenticatedAttributes [1] holds Attribute ::= SEQUENCE { type OID,
    // values SET OF ContentInfo } with type SPC_NESTED_SIGNATURE.
    if depth >= MAX_SIGNATURE_NESTING {
        return Ok(());
    }
    let mut rest = None;
    while let Some(t) = si.next()? {
        if t.tag == CONTEXT_1 {
            rest = Some(t);
        }
    }
    let Some(unauthenticated) = rest else {
        return Ok(());
    };
    let mut attributes = unauthenticated.children();
    for _ in 0..MAX_SIGNERS {
        let Some(attribute) = attributes.next()? else {
            break;
        };
        if attribute.tag != SEQUENCE {
            continue;
        }
        let mut a = attribute.children();
        let kind = a.expect(OID, "attribute type")?;
        if kind.body != OID_NESTED_SIGNATURE {
            continue;
        }
        let values = a.expect(SET, "nested signature values")?;
        let mut v = values.children();
        for _ in 0..MAX_SIGNERS {
            if v.pos >= v.data.len() || out.len() >= MAX_SIGNERS {
                break;
            }
            signers_of_content_info(&mut v, depth + 1, out)?;
        }
    }
    Ok(())
}

/// The subject name of the certificate in `certificates` with this issuer and serial number.
/// RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate, … }; TBSCertificate ::= SEQUENCE
/// { version [0] EXPLICIT OPTIONAL, serialNumber, signature, issuer, validity, subject, … }.
fn signer_name(
    certificates: &Tlv<'_>,
    issuer: &[u8],
    serial: &[u8],
) -> Result<Option<String>, DerError> {
    let mut certs = certificates.children();
    for _ in 0..MAX_CERTIFICATES {
        let Some(cert) = certs.next()? else {
            return Ok(None);
        };
        if cert.tag != SEQUENCE {
            continue; // PKCS #6 extended certificates and other choices: not the signer's.
        }
        let tbs = cert.children().expect(SEQUENCE, "tbsCertificate")?;
        let mut t = tbs.children();
        let mut first = t.next()?.ok_or_else(|| t.fail("tbsCertificate is empty"))?;
        if first.tag == CONTEXT_0 {
            first = t.next()?.ok_or_else(|| t.fail("serialNumber is missing"))?;
        }
        if first.tag != INTEGER {
            return Err(DerError {
                offset: first.body_at,
                reason: "certificate serialNumber is not an INTEGER".into(),
            });
        }
        t.expect(SEQUENCE, "certificate signature algorithm")?;
        let cert_issuer = t.expect(SEQUENCE, "certificate issuer")?;
        t.expect(SEQUENCE, "certificate validity")?;
        let subject = t.expect(SEQUENCE, "certificate subject")?;
        if first.body == serial && cert_issuer.raw == issuer {
            return name_of(&subject);
        }
    }
    Ok(None)
}

/// The last common name of a Name, else its last organisation name. RFC 5280 §4.1.2.4: Name ::=
/// SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue ::= SEQUENCE { type,
/// value DirectoryString }).
fn name_of(name: &Tlv<'_>) -> Result<Option<String>, DerError> {
    let mut common = None;
    let mut organization = None;
    let mut rdns = name.children();
    for _ in 0..MAX_RDNS {
        let Some(rdn) = rdns.next()? else {
            break;
        };
        let mut atvs = rdn.children();
        for _ in 0..MAX_RDNS {
            let Some(atv) = atvs.next()? else {
                break;
            };
            if atv.tag != SEQUENCE {
                continue;
            }
            let mut a = atv.children();
            let kind = a.expect(OID, "attribute type")?;
            let Some(value) = a.next()? else {
                continue;
            };
            if kind.body == OID_COMMON_NAME {
                common = decode_string(&value).or(common);
            } else if kind.body == OID_ORGANIZATION {
                organization = decode_string(&value).or(organization);
            }
        }
    }
    Ok(common.or(organization))
}

/// A DirectoryString (or IA5/Visible string) as text, with control characters replaced and at
/// most [`MAX_NAME_CHARS`] characters: the name goes into reports and terminals.
fn decode_string(value: &Tlv<'_>) -> Option<String> {
    // Enough bytes for MAX_NAME_CHARS characters in any of the encodings below.
    let b = &value.body[..value.body.len().min(4 * MAX_NAME_CHARS)];
    let chars: Vec<char> = match value.tag {
        // UTF8String, PrintableString, IA5String, VisibleString.
        0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8_lossy(b).chars().collect(),
        // TeletexString: taken as Latin-1, as most readers do.
        0x14 => b.iter().map(|&c| char::from(c)).collect(),
        // BMPString: UTF-16 big-endian.
        0x1e => char::decode_utf16(b.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])))
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
        // UniversalString: UTF-32 big-endian.
        0x1c => b
            .chunks_exact(4)
            .map(|p| {
                char::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => return None,
    };
    let text: String = chars
        .into_iter()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Where the test image puts things (a linker's usual choices, small).
    const PE_AT: usize = 0x80;
    const COFF_AT: usize = PE_AT + 4;
    const OPT_AT: usize = COFF_AT + 20;
    const FILE_ALIGN: usize = 0x200;
    const HEADERS: usize = 0x400;
    const TEXT_RVA: u32 = 0x1000;

    /// A minimal PE image written byte by byte: MS-DOS header, PE signature, COFF file header,
    /// optional header with 16 data directories, a `.text` section and (with a version) a
    /// `.rsrc` section holding `RT_VERSION → 1 → 0x409 → VS_VERSIONINFO`.
    #[derive(Clone)]
    struct Builder {
        machine: u16,
        plus: bool,
        subsystem: u16,
        characteristics: u16,
        text_size: usize,
        version: Option<[u16; 4]>,
        /// A WIN_CERTIFICATE (type, bCertificate) appended at the end, quadword-aligned.
        certificate: Option<(u16, Vec<u8>)>,
        /// Bytes of padding between the sections and the certificate table.
        tail_padding: usize,
    }

    /// Offsets of the built image's parts, for tests that corrupt them.
    struct Layout {
        directories: usize,
        section_table: usize,
        rsrc: usize,
        version: usize,
    }

    impl Builder {
        fn driver() -> Builder {
            Builder {
                machine: 0x8664,
                plus: true,
                subsystem: 1,
                // IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE
                characteristics: 0x0022,
                text_size: FILE_ALIGN,
                version: Some([100, 95, 104, 26200]),
                certificate: None,
                tail_padding: 0,
            }
        }

        fn opt_size(&self) -> usize {
            if self.plus {
                112 + 128
            } else {
                96 + 128
            }
        }

        fn layout(&self) -> Layout {
            let directories = OPT_AT + self.opt_size() - 128;
            let section_table = OPT_AT + self.opt_size();
            let rsrc = HEADERS + self.text_size;
            Layout {
                directories,
                section_table,
                rsrc,
                version: rsrc + 0x58,
            }
        }

        fn build(&self) -> Vec<u8> {
            let l = self.layout();
            let sections = if self.version.is_some() { 2 } else { 1 };
            let rsrc_rva = TEXT_RVA + self.text_size.next_multiple_of(0x1000) as u32;
            let end = l.rsrc
                + if self.version.is_some() {
                    FILE_ALIGN
                } else {
                    0
                };
            let mut f = vec![0u8; end];
            let put16 = |f: &mut Vec<u8>, at: usize, v: u16| {
                f[at..at + 2].copy_from_slice(&v.to_le_bytes())
            };
            let put32 = |f: &mut Vec<u8>, at: usize, v: u32| {
                f[at..at + 4].copy_from_slice(&v.to_le_bytes())
            };
            // MS-DOS header: "MZ", e_lfanew at 0x3c.
            f[0..2].copy_from_slice(b"MZ");
            put32(&mut f, 0x3c, PE_AT as u32);
            f[PE_AT..PE_AT + 4].copy_from_slice(b"PE\0\0");
            // COFF file header.
            put16(&mut f, COFF_AT, self.machine);
            put16(&mut f, COFF_AT + 2, sections);
            put16(&mut f, COFF_AT + 16, self.opt_size() as u16);
            put16(&mut f, COFF_AT + 18, self.characteristics);
            // Optional header.
            put16(&mut f, OPT_AT, if self.plus { 0x20b } else { 0x10b });
            put32(&mut f, OPT_AT + 16, TEXT_RVA); // AddressOfEntryPoint
            put32(&mut f, OPT_AT + 32, 0x1000); // SectionAlignment
            put32(&mut f, OPT_AT + 36, FILE_ALIGN as u32); // FileAlignment
            put16(&mut f, OPT_AT + 40, 6); // MajorOperatingSystemVersion
            put16(&mut f, OPT_AT + 48, 6); // MajorSubsystemVersion
            put32(&mut f, OPT_AT + 56, rsrc_rva + 0x1000); // SizeOfImage
            put32(&mut f, OPT_AT + 60, HEADERS as u32); // SizeOfHeaders
            put16(&mut f, OPT_AT + 68, self.subsystem);
            put32(&mut f, l.directories - 4, 16); // NumberOfRvaAndSizes
                                                  // Section table.
            let row = |f: &mut Vec<u8>,
                       i: usize,
                       name: &[u8],
                       rva: u32,
                       size: usize,
                       at: usize,
                       flags: u32| {
                let r = l.section_table + 40 * i;
                f[r..r + name.len()].copy_from_slice(name);
                put32(f, r + 8, size as u32);
                put32(f, r + 12, rva);
                put32(f, r + 16, size as u32);
                put32(f, r + 20, at as u32);
                put32(f, r + 36, flags);
            };
            row(
                &mut f,
                0,
                b".text",
                TEXT_RVA,
                self.text_size,
                HEADERS,
                0x6000_0020,
            );
            f[HEADERS] = 0xc3; // ret
            if let Some([a, b, c, d]) = self.version {
                row(
                    &mut f,
                    1,
                    b".rsrc",
                    rsrc_rva,
                    FILE_ALIGN,
                    l.rsrc,
                    0x4000_0040,
                );
                put32(&mut f, l.directories + 16, rsrc_rva);
                put32(&mut f, l.directories + 20, 0x58 + 92);
                let r = l.rsrc;
                // Root (types): one ID entry, RT_VERSION → directory at 0x18.
                put16(&mut f, r + 14, 1);
                put32(&mut f, r + 16, 16);
                put32(&mut f, r + 20, 0x8000_0018);
                // Names: ID 1 → directory at 0x30.
                put16(&mut f, r + 0x18 + 14, 1);
                put32(&mut f, r + 0x18 + 16, 1);
                put32(&mut f, r + 0x18 + 20, 0x8000_0030);
                // Languages: 0x409 → data entry at 0x48.
                put16(&mut f, r + 0x30 + 14, 1);
                put32(&mut f, r + 0x30 + 16, 0x409);
                put32(&mut f, r + 0x30 + 20, 0x48);
                // Resource Data Entry: the VS_VERSIONINFO at 0x58, 92 bytes, code page 1200.
                put32(&mut f, r + 0x48, rsrc_rva + 0x58);
                put32(&mut f, r + 0x48 + 4, 92);
                put32(&mut f, r + 0x48 + 8, 1200);
                // VS_VERSIONINFO: wLength, wValueLength, wType, szKey, padding, VS_FIXEDFILEINFO.
                let v = l.version;
                put16(&mut f, v, 92);
                put16(&mut f, v + 2, 52);
                for (i, unit) in "VS_VERSION_INFO\0".encode_utf16().enumerate() {
                    put16(&mut f, v + 6 + 2 * i, unit);
                }
                let ms = (u32::from(a) << 16) | u32::from(b);
                let ls = (u32::from(c) << 16) | u32::from(d);
                put32(&mut f, v + 40, 0xfeef_04bd);
                put32(&mut f, v + 44, 0x0001_0000);
                put32(&mut f, v + 48, ms);
                put32(&mut f, v + 52, ls);
                put32(&mut f, v + 56, ms);
                put32(&mut f, v + 60, ls);
            }
            if let Some((kind, body)) = &self.certificate {
                let at = (f.len() + self.tail_padding).next_multiple_of(8);
                let length = 8 + body.len();
                let total = length.next_multiple_of(8);
                f.resize(at + total, 0);
                put32(&mut f, at, length as u32);
                put16(&mut f, at + 4, 0x0200);
                put16(&mut f, at + 6, *kind);
                f[at + 8..at + 8 + body.len()].copy_from_slice(body);
                put32(&mut f, l.directories + 32, at as u32);
                put32(&mut f, l.directories + 36, total as u32);
            }
            f
        }
    }

    fn read(bytes: &[u8]) -> Result<DriverImage, PeError> {
        read_driver(&bytes.to_vec())
    }

    fn put32(f: &mut [u8], at: usize, v: u32) {
        f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put16(f: &mut [u8], at: usize, v: u16) {
        f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn a_minimal_native_amd64_driver() {
        let bytes = Builder::driver().build();
        let img = read(&bytes).unwrap();
        assert_eq!(img.machine, Machine::AMD64);
        assert!(img.pe32_plus);
        assert_eq!(img.subsystem, Subsystem::NATIVE);
        assert_eq!(img.size, bytes.len() as u64);
        assert_eq!(img.sections.len(), 2);
        assert_eq!(img.sections[1].name, ".rsrc");
        assert!(matches!(img.signature, SignatureInfo::Absent));
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        assert!(img.problems(Some(Machine::AMD64), false).is_empty());
        assert_eq!(
            img.problems(Some(Machine::AMD64), true),
            vec![Problem::Unsigned]
        );
        assert!(img.unread().is_empty());
        // The whole 2 KiB file fits the first window: one read.
        assert_eq!(
            img.cost,
            ReadCost {
                reads: 1,
                bytes: bytes.len() as u64
            }
        );
        let summary = img.summary();
        assert!(
            summary.starts_with("PE32+ AMD64 (0x8664) native (1) image"),
            "{summary}"
        );
        assert!(
            summary.contains("file version 100.95.104.26200"),
            "{summary}"
        );
        let json = serde_json::to_value(&img).unwrap();
        assert_eq!(json["machine"], "AMD64 (0x8664)");
        assert_eq!(json["signature"]["state"], "absent");
        assert_eq!(json["version"]["detail"]["file"], "100.95.104.26200");
    }

    #[test]
    fn a_large_driver_costs_two_reads_not_the_file() {
        let mut b = Builder::driver();
        b.text_size = 1 << 20;
        b.certificate = Some((WIN_CERT_TYPE_PKCS_SIGNED_DATA, vec![0x30, 0x00]));
        let bytes = b.build();
        let img = read(&bytes).unwrap();
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        assert!(img.is_signed());
        // The headers; then the resources and the certificate table right after them.
        assert_eq!(img.cost.reads, 2);
        assert!(img.cost.bytes <= 2 * WINDOW, "{:?}", img.cost);

        // Resources far from the table: one read each.
        b.tail_padding = 4 * TAIL_GAP as usize;
        let img = read(&b.build()).unwrap();
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        assert!(img.is_signed());
        assert_eq!(img.cost.reads, 3);
        assert!(img.cost.bytes <= 3 * WINDOW, "{:?}", img.cost);
    }

    #[test]
    fn pe32_i386_and_the_machine_checks() {
        let mut b = Builder::driver();
        b.machine = 0x14c;
        b.plus = false;
        let img = read(&b.build()).unwrap();
        assert_eq!(img.machine, Machine::I386);
        assert!(!img.pe32_plus);
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        assert!(img.problems(Some(Machine::I386), false).is_empty());
        // An i386 driver in an AMD64 Windows: wrong machine, and unsigned where required.
        assert_eq!(
            img.problems(Some(Machine::AMD64), true),
            vec![
                Problem::WrongMachine {
                    found: Machine::I386,
                    expected: Machine::AMD64
                },
                Problem::Unsigned
            ]
        );
        let text = img.problems(Some(Machine::AMD64), false)[0].to_string();
        assert_eq!(
            text,
            "built for x86 (0x014c), the Windows installation is AMD64 (0x8664)"
        );

        // AMD64 with a PE32 optional header, ARM64 PE32+.
        let mut b = Builder::driver();
        b.plus = false;
        let img = read(&b.build()).unwrap();
        assert_eq!(
            img.problems(Some(Machine::AMD64), false),
            vec![Problem::WrongOptionalHeader {
                machine: Machine::AMD64,
                pe32_plus: false
            }]
        );
        let mut b = Builder::driver();
        b.machine = 0xaa64;
        let img = read(&b.build()).unwrap();
        assert_eq!(img.machine.to_string(), "ARM64 (0xaa64)");
        assert!(img.problems(Some(Machine::ARM64), false).is_empty());
        assert_eq!(Machine(0x1234).to_string(), "unknown machine 0x1234");
    }

    #[test]
    fn windows_architectures_map_to_machines() {
        assert_eq!(
            Machine::for_windows_architecture("AMD64"),
            Some(Machine::AMD64)
        );
        assert_eq!(
            Machine::for_windows_architecture("amd64"),
            Some(Machine::AMD64)
        );
        assert_eq!(
            Machine::for_windows_architecture("x86"),
            Some(Machine::I386)
        );
        assert_eq!(
            Machine::for_windows_architecture("ARM64"),
            Some(Machine::ARM64)
        );
        assert_eq!(Machine::for_windows_architecture("MIPS"), None);
        assert!(Machine::AMD64.is_64_bit() && Machine::ARM64.is_64_bit());
        assert!(!Machine::I386.is_64_bit());
    }

    #[test]
    fn subsystem_and_executable_flag() {
        let mut b = Builder::driver();
        b.subsystem = 3;
        b.characteristics = 0x0020;
        let img = read(&b.build()).unwrap();
        assert_eq!(
            img.problems(None, false),
            vec![
                Problem::NotNative {
                    subsystem: Subsystem(3)
                },
                Problem::NotExecutable {
                    characteristics: 0x0020
                }
            ]
        );
        assert_eq!(
            img.problems(None, false)[0].to_string(),
            "subsystem Windows console (3), not native (1) as a kernel driver is"
        );
    }

    /// Cut the image at every length: never a panic; inside the headers an error that is not
    /// an I/O error; past them a truncated section (and a version that cannot be read).
    #[test]
    fn truncated_at_every_byte() {
        let b = Builder::driver();
        let full = b.build();
        let headers_end = b.layout().section_table + 2 * 40;
        // The version is read once its 64 bytes are there.
        let version_end = b.layout().version + 64;
        for n in 0..full.len() {
            let result = read(&full[..n]);
            if n < headers_end {
                let e = result.expect_err(&format!("cut at {n}"));
                assert!(!e.is_io(), "cut at {n}: {e}");
                let expected = match n {
                    0 => matches!(e, PeError::Empty),
                    1 => matches!(e, PeError::NotMz { .. }),
                    _ => matches!(e, PeError::Truncated { .. }),
                };
                assert!(expected, "cut at {n}: {e}");
            } else {
                let img = result.unwrap_or_else(|e| panic!("cut at {n}: {e}"));
                let problems = img.problems(Some(Machine::AMD64), false);
                assert!(
                    problems
                        .iter()
                        .any(|p| matches!(p, Problem::SectionPastEnd { .. })),
                    "cut at {n}: {problems:?}"
                );
                assert_eq!(img.file_version().is_some(), n >= version_end, "cut at {n}");
            }
        }
        // Named errors at the structure boundaries.
        let e = read(&full[..0x40]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the PE signature at offset 0x80 (4 bytes) reaches past the end of the file (64 bytes)"
        );
        let e = read(&full[..COFF_AT + 10]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the COFF file header at offset 0x84"),
            "{e}"
        );
        let e = read(&full[..OPT_AT + 100]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the optional header at offset 0x98"),
            "{e}"
        );
        let e = read(&full[..headers_end - 1]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the section table at offset 0x188"),
            "{e}"
        );
        let img = read(&full[..full.len() - 1]).unwrap();
        assert_eq!(
            img.problems(None, false),
            vec![Problem::SectionPastEnd {
                name: ".rsrc".into(),
                end: full.len() as u64,
                size: full.len() as u64 - 1
            }]
        );
    }

    #[test]
    fn not_a_pe_image() {
        assert!(matches!(read(b"").unwrap_err(), PeError::Empty));
        let e = read(b"ZM\0\0 this is a text file, not a driver").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a PE image: the file starts with [5a, 4d], not \"MZ\""
        );
        let mut bytes = Builder::driver().build();
        bytes[PE_AT..PE_AT + 4].copy_from_slice(b"NE\0\0");
        let e = read(&bytes).unwrap_err();
        assert!(
            matches!(e, PeError::NoPeSignature { offset: 0x80, .. }),
            "{e}"
        );
        let mut bytes = Builder::driver().build();
        put32(&mut bytes, 0x3c, 0xffff_fff0);
        assert!(matches!(
            read(&bytes).unwrap_err(),
            PeError::Truncated { .. }
        ));
        let mut bytes = Builder::driver().build();
        put16(&mut bytes, OPT_AT, 0x107);
        let e = read(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad optional header at offset 0x98: magic 0x0107 is neither PE32 (0x10b) nor PE32+ (0x20b)"
        );
        let mut bytes = Builder::driver().build();
        put16(&mut bytes, COFF_AT + 16, 0);
        assert!(matches!(
            read(&bytes).unwrap_err(),
            PeError::OptionalHeader { .. }
        ));
        let mut bytes = Builder::driver().build();
        put16(&mut bytes, COFF_AT + 16, 100);
        let e = read(&bytes).unwrap_err();
        assert!(
            e.to_string()
                .contains("less than the 112 bytes of the PE32+ fields"),
            "{e}"
        );
    }

    #[test]
    fn huge_section_counts() {
        let mut bytes = Builder::driver().build();
        put16(&mut bytes, COFF_AT + 2, 0xffff);
        let e = read(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the COFF file header at offset 0x84 declares 65535 sections; the Windows loader accepts at most 96"
        );
        // 96 sections: allowed, but the table runs past this small file.
        put16(&mut bytes, COFF_AT + 2, 96);
        assert!(matches!(
            read(&bytes).unwrap_err(),
            PeError::Truncated {
                what: "section table",
                ..
            }
        ));
        // A huge SizeOfOptionalHeader moves the section table past the end, without a big read.
        let mut bytes = Builder::driver().build();
        put16(&mut bytes, COFF_AT + 16, 0xffff);
        let e = read(&bytes).unwrap_err();
        assert!(
            matches!(
                e,
                PeError::Truncated {
                    what: "section table",
                    offset: 0x10097,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn certificate_table_outside_the_file_or_of_another_type() {
        let b = Builder::driver();
        let dirs = b.layout().directories;
        let mut bytes = b.build();
        let len = bytes.len() as u32;
        put32(&mut bytes, dirs + 32, len - 8);
        put32(&mut bytes, dirs + 36, 0x1000);
        let img = read(&bytes).unwrap();
        let SignatureInfo::Malformed(e) = &img.signature else {
            panic!("{:?}", img.signature)
        };
        assert!(
            e.to_string().contains("reaches past the end of the file"),
            "{e}"
        );
        assert!(matches!(
            img.problems(Some(Machine::AMD64), true).as_slice(),
            [Problem::BadSignature { .. }]
        ));
        // Not a problem where no signature is required (32-bit Windows).
        assert!(img.problems(Some(Machine::AMD64), false).is_empty());
        // An offset that overflows.
        put32(&mut bytes, dirs + 32, 0xffff_fff8);
        let img = read(&bytes).unwrap();
        assert!(matches!(img.signature, SignatureInfo::Malformed(_)));
        // Shorter than a WIN_CERTIFICATE header.
        put32(&mut bytes, dirs + 32, len - 8);
        put32(&mut bytes, dirs + 36, 4);
        let img = read(&bytes).unwrap();
        assert!(matches!(img.signature, SignatureInfo::Malformed(_)));

        // An X.509 certificate (type 1) is not an Authenticode signature.
        let mut b = Builder::driver();
        b.certificate = Some((0x0001, vec![0x30, 0x00]));
        let img = read(&b.build()).unwrap();
        let SignatureInfo::Malformed(e) = &img.signature else {
            panic!("{:?}", img.signature)
        };
        assert!(
            e.to_string()
                .contains("WIN_CERTIFICATE type 0x0001, not PKCS_SIGNED_DATA"),
            "{e}"
        );

        // dwLength larger than the table.
        let mut b = Builder::driver();
        b.certificate = Some((WIN_CERT_TYPE_PKCS_SIGNED_DATA, vec![0x30, 0x00]));
        let mut bytes = b.build();
        let table = u32_at(&bytes, dirs + 32) as usize;
        put32(&mut bytes, table, 0x10000);
        let img = read(&bytes).unwrap();
        assert!(matches!(img.signature, SignatureInfo::Malformed(_)));
    }

    #[test]
    fn a_signature_whose_pkcs7_is_garbage_is_present_without_a_signer() {
        let mut b = Builder::driver();
        b.certificate = Some((
            WIN_CERT_TYPE_PKCS_SIGNED_DATA,
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 1],
        ));
        let img = read(&b.build()).unwrap();
        let SignatureInfo::Embedded(sig) = &img.signature else {
            panic!("{:?}", img.signature)
        };
        assert_eq!(sig.signer, None);
        let e = sig.signer_error.as_ref().unwrap();
        assert!(
            e.to_string().contains("an element of 4294967295 bytes"),
            "{e}"
        );
        assert!(img.problems(Some(Machine::AMD64), true).is_empty());
        assert!(
            img.summary().contains("signed (signer not read)"),
            "{}",
            img.summary()
        );
    }

    #[test]
    fn version_resource_absent_or_malformed() {
        // No resource directory at all.
        let mut b = Builder::driver();
        b.version = None;
        let img = read(&b.build()).unwrap();
        assert!(matches!(img.version, VersionInfo::Absent));
        assert!(img.problems(Some(Machine::AMD64), false).is_empty());

        let b = Builder::driver();
        let l = b.layout();
        let good = b.build();
        let malformed = |bytes: &[u8]| -> String {
            match read(bytes).unwrap().version {
                VersionInfo::Malformed(e) => e.to_string(),
                other => panic!("{other:?}"),
            }
        };
        // Only a manifest (type 24): no version.
        let mut bytes = good.clone();
        put32(&mut bytes, l.rsrc + 16, 24);
        assert!(matches!(read(&bytes).unwrap().version, VersionInfo::Absent));
        // Wrong key, wrong VS_FIXEDFILEINFO signature, no fixed info.
        let mut bytes = good.clone();
        bytes[l.version + 6] = b'X';
        assert!(malformed(&bytes).contains("szKey is \"XS_VERSION_INFO\""));
        let mut bytes = good.clone();
        put32(&mut bytes, l.version + 40, 0x1234_5678);
        assert!(malformed(&bytes).contains("dwSignature 0x12345678"));
        let mut bytes = good.clone();
        put16(&mut bytes, l.version + 2, 0);
        assert!(malformed(&bytes).contains("no room for a VS_FIXEDFILEINFO"));
        // Data too small, data RVA outside every section.
        let mut bytes = good.clone();
        put32(&mut bytes, l.rsrc + 0x48 + 4, 20);
        assert!(malformed(&bytes).contains("20 bytes of version data"));
        let mut bytes = good.clone();
        put32(&mut bytes, l.rsrc + 0x48, 0x9000_0000);
        assert!(malformed(&bytes).contains("lies in no section's data"));
        // Resource directory RVA outside every section.
        let mut bytes = good.clone();
        put32(&mut bytes, l.directories + 16, 0x7000_0000);
        assert!(malformed(&bytes).contains("RVA 0x70000000 lies in no section's data"));
        // 65535 + 65535 entries: refused before reading them.
        let mut bytes = good.clone();
        put16(&mut bytes, l.rsrc + 12, 0xffff);
        put16(&mut bytes, l.rsrc + 14, 0xffff);
        assert!(malformed(&bytes).contains("131070 entries in one directory table"));
        // Entries past the end of the section data, a subdirectory past the end.
        let mut bytes = good.clone();
        put16(&mut bytes, l.rsrc + 14, 100);
        assert!(malformed(&bytes).contains("reach past the end of the resource data"));
        let mut bytes = good.clone();
        put32(&mut bytes, l.rsrc + 20, 0x8000_7000);
        assert!(malformed(&bytes).contains("lies past its end"));
        // A leaf where a directory is expected.
        let mut bytes = good.clone();
        put32(&mut bytes, l.rsrc + 20, 0x48);
        assert!(malformed(&bytes).contains("level 1 entry points to a data entry"));
    }

    #[test]
    fn cyclic_resource_directories_end() {
        let b = Builder::driver();
        let l = b.layout();
        // The name level points back to the root; the language level to itself.
        for (at, target) in [
            (l.rsrc + 0x18 + 20, 0x8000_0000u32),
            (l.rsrc + 0x30 + 20, 0x8000_0030),
        ] {
            let mut bytes = b.build();
            put32(&mut bytes, at, target);
            let img = read(&bytes).unwrap();
            let VersionInfo::Malformed(e) = &img.version else {
                panic!("{:?}", img.version)
            };
            assert!(e.to_string().contains("a fourth directory level"), "{e}");
            assert!(img.cost.reads <= 2, "{:?}", img.cost);
        }
    }

    /// A reader whose reads fail from `from` on (a disk error, not bad content).
    struct Failing {
        data: Vec<u8>,
        from: u64,
    }

    impl ReadAt for Failing {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            if offset + buf.len() as u64 > self.from {
                return Err(io::Error::other("injected I/O error"));
            }
            self.data.read_exact_at(buf, offset)
        }
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
    }

    #[test]
    fn io_errors_are_unknown_not_bad() {
        let mut b = Builder::driver();
        b.text_size = 0x4000;
        b.certificate = Some((WIN_CERT_TYPE_PKCS_SIGNED_DATA, vec![0x30, 0x00]));
        let data = b.build();
        let e = read_driver(&Failing {
            data: data.clone(),
            from: 0,
        })
        .unwrap_err();
        assert!(e.is_io(), "{e}");
        assert!(e.to_string().contains("injected I/O error"), "{e}");
        // The headers read, the rest of the file fails.
        let img = read_driver(&Failing { data, from: 0x1000 }).unwrap();
        assert!(matches!(img.signature, SignatureInfo::Unread(_)));
        assert!(matches!(img.version, VersionInfo::Unread(_)));
        assert_eq!(img.unread().len(), 2);
        assert!(img.problems(Some(Machine::AMD64), true).is_empty());
    }

    #[test]
    fn der_walker_refuses_what_it_does_not_read() {
        let walk = |b: &[u8]| signers_of(b, 0, &mut Vec::new()).unwrap_err().reason;
        assert_eq!(
            walk(&[0x30, 0x80, 0, 0]),
            "indefinite length (BER, not DER)"
        );
        assert_eq!(walk(&[0x30, 0x85, 1, 1, 1, 1, 1]), "a length of 5 octets");
        assert_eq!(
            walk(&[0x3f, 0x01, 0]),
            "tag 0x3f uses the high-tag-number form"
        );
        assert_eq!(walk(&[0x30]), "the element ends inside its length");
        assert_eq!(
            walk(&[0x30, 0x05, 0x06, 0x01, 0x2a, 0xa0, 0x00]),
            "the content type is not pkcs7-signedData (1.2.840.113549.1.7.2)"
        );
        assert_eq!(walk(&[]), "ContentInfo is missing");
    }

    #[test]
    fn directory_strings_are_decoded_and_cleaned() {
        let tlv = |tag: u8, body: &'static [u8]| Tlv {
            tag,
            raw: body,
            body,
            body_at: 0,
        };
        assert_eq!(
            decode_string(&tlv(0x0c, "Red Hat, Inc.".as_bytes())).as_deref(),
            Some("Red Hat, Inc.")
        );
        assert_eq!(
            decode_string(&tlv(0x1e, &[0, b'R', 0, b'H', 0x4e, 0x2d])).as_deref(),
            Some("RH中")
        );
        assert_eq!(
            decode_string(&tlv(0x14, &[b'M', 0xfc, b'n'])).as_deref(),
            Some("Mün")
        );
        assert_eq!(
            decode_string(&tlv(0x13, b"a\x1b[2Jb")).as_deref(),
            Some("a\u{fffd}[2Jb")
        );
        assert_eq!(decode_string(&tlv(0x04, b"octets")), None);
        let long = decode_string(&tlv(0x0c, &[b'x'; 1000])).unwrap();
        assert_eq!(long.chars().count(), MAX_NAME_CHARS);
    }

    // ---- Real Authenticode structures, made by the real tools ----

    fn run(cmd: &mut Command) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (osslsigncode and openssl are Debian packages; .ci/setup-host.sh installs them)"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed code-signing key and certificate with subject `subject`.
    fn make_cert(dir: &Path, name: &str, subject: &str) -> (String, String) {
        let key = dir.join(format!("{name}.key")).display().to_string();
        let cert = dir.join(format!("{name}.pem")).display().to_string();
        run(Command::new("openssl").args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", subject,
            "-keyout", &key, "-out", &cert,
        ]));
        (key, cert)
    }

    fn sign(input: &Path, output: &Path, (key, cert): &(String, String), nest: bool) {
        let mut cmd = Command::new("osslsigncode");
        cmd.arg("sign");
        if nest {
            cmd.arg("-nest");
        }
        cmd.args(["-h", "sha256", "-certs", cert, "-key", key, "-in"])
            .arg(input)
            .arg("-out")
            .arg(output);
        run(&mut cmd);
    }

    #[test]
    fn osslsigncode_signature_gives_the_signer_and_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Builder::driver();
        b.text_size = 0x8000;
        let unsigned = dir.path().join("viostor.sys");
        std::fs::write(&unsigned, b.build()).unwrap();
        let first = make_cert(
            dir.path(),
            "vendor",
            "/O=Virtio Test Org/CN=Virtio Test Signer",
        );
        let signed = dir.path().join("signed.sys");
        sign(&unsigned, &signed, &first, false);

        let bytes = std::fs::read(&signed).unwrap();
        let img = read(&bytes).unwrap();
        let SignatureInfo::Embedded(sig) = &img.signature else {
            panic!("{:?}", img.signature)
        };
        assert_eq!(sig.revision, 0x0200);
        assert_eq!(sig.signer.as_deref(), Some("Virtio Test Signer"));
        assert!(sig.nested_signers.is_empty());
        assert!(sig.signer_error.is_none(), "{:?}", sig.signer_error);
        assert_eq!(
            sig.offset + u64::from(sig.length).next_multiple_of(8),
            bytes.len() as u64
        );
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        assert!(img.problems(Some(Machine::AMD64), true).is_empty());
        assert!(img
            .summary()
            .contains("signed by \"Virtio Test Signer\" (chain not validated)"));
        // The headers; the resource tree and the certificate table after it.
        assert_eq!(img.cost.reads, 2, "{:?}", img.cost);
        assert!(img.cost.bytes < 2 * WINDOW, "{:?}", img.cost);

        // A nested signature by a certificate with an organisation only.
        let second = make_cert(dir.path(), "attest", "/O=Second Test Org");
        let nested = dir.path().join("nested.sys");
        sign(&signed, &nested, &second, true);
        let img = read(&std::fs::read(&nested).unwrap()).unwrap();
        let SignatureInfo::Embedded(sig) = &img.signature else {
            panic!("{:?}", img.signature)
        };
        assert_eq!(sig.signer.as_deref(), Some("Virtio Test Signer"));
        assert_eq!(sig.nested_signers, vec!["Second Test Org".to_string()]);
        assert!(
            img.summary().contains("and \"Second Test Org\""),
            "{}",
            img.summary()
        );

        // The signed file cut short: the table now reaches past the end.
        let img = read(&bytes[..bytes.len() - 100]).unwrap();
        assert!(matches!(img.signature, SignatureInfo::Malformed(_)));
        assert!(matches!(
            img.problems(Some(Machine::AMD64), true).as_slice(),
            [Problem::BadSignature { .. }]
        ));

        // Every byte of the signature flipped in turn: never a panic, always "present".
        let table = sig.offset as usize;
        let mut bytes = std::fs::read(&nested).unwrap();
        for i in table + 8..bytes.len() {
            bytes[i] ^= 0xff;
            let img = read(&bytes).unwrap();
            assert!(img.is_signed(), "byte {i}");
            bytes[i] ^= 0xff;
        }
    }

    /// Through the guest file system as the verdict opens driver files: the host sees exactly
    /// the reads the check counts, a few KiB of a 1 MiB signed driver.
    #[test]
    fn through_the_guest_file_system_the_host_sees_two_reads() {
        use crate::inspect::guestfs::{GuestFs, HostDirFs};
        use crate::inspect::image::IoStats;
        let dir = tempfile::tempdir().unwrap();
        let drivers = dir.path().join("Windows/System32/drivers");
        std::fs::create_dir_all(&drivers).unwrap();
        let mut b = Builder::driver();
        b.text_size = 1 << 20;
        let unsigned = dir.path().join("unsigned.sys");
        std::fs::write(&unsigned, b.build()).unwrap();
        let vendor = make_cert(dir.path(), "vendor", "/CN=Virtio Test Signer");
        sign(&unsigned, &drivers.join("viostor.sys"), &vendor, false);

        let stats = IoStats::new();
        let fs = HostDirFs::with_stats(dir.path(), stats.clone());
        let file = fs.open("windows/system32/DRIVERS/viostor.sys").unwrap();
        let img = read_driver(&*file).unwrap();
        assert_eq!(img.signer(), Some("Virtio Test Signer"));
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        let host = stats.snapshot();
        println!(
            "{} bytes, signed: host reads {}, bytes {}",
            img.size, host[0].reads, host[0].bytes_read
        );
        assert_eq!(host.len(), 1);
        assert_eq!(
            (host[0].reads, host[0].bytes_read),
            (u64::from(img.cost.reads), img.cost.bytes)
        );
        assert_eq!(img.cost.reads, 2);
        assert!(
            img.cost.bytes <= 2 * WINDOW && img.size > 1 << 20,
            "{:?}",
            img.cost
        );
    }

    /// `fixtures/drivers/make-driver.py`, which the fixture images use, writes what this
    /// reader reads.
    #[test]
    fn the_fixture_driver_maker_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/drivers/make-driver.py");
        let make = |name: &str, args: &[&str]| -> DriverImage {
            let out = dir.path().join(name);
            run(Command::new("python3").arg(&script).arg(&out).args(args));
            read(&std::fs::read(&out).unwrap()).unwrap()
        };
        let img = make("default.sys", &[]);
        assert_eq!(
            (img.machine, img.pe32_plus, img.subsystem),
            (Machine::AMD64, true, Subsystem::NATIVE)
        );
        assert_eq!(img.file_version(), Some("100.95.104.26200"));
        assert_eq!(
            img.problems(Some(Machine::AMD64), true),
            vec![Problem::Unsigned]
        );
        let img = make(
            "signed.sys",
            &[
                "--version",
                "62.77.104.8800",
                "--sign",
                "/O=Red Hat, Inc./CN=Red Hat, Inc.",
                "--nest",
                "/CN=Attestation",
            ],
        );
        assert_eq!(img.signer(), Some("Red Hat, Inc."));
        assert_eq!(img.file_version(), Some("62.77.104.8800"));
        assert!(img.problems(Some(Machine::AMD64), true).is_empty());
        let SignatureInfo::Embedded(sig) = &img.signature else {
            panic!()
        };
        assert_eq!(sig.nested_signers, vec!["Attestation".to_string()]);
        let img = make("i386.sys", &["--machine", "i386", "--no-version"]);
        assert_eq!((img.machine, img.pe32_plus), (Machine::I386, false));
        assert!(matches!(img.version, VersionInfo::Absent));
        assert!(img.problems(Some(Machine::I386), false).is_empty());
        let img = make("console.sys", &["--subsystem", "3", "--machine", "arm64"]);
        assert_eq!(
            img.problems(Some(Machine::ARM64), false),
            vec![Problem::NotNative {
                subsystem: Subsystem(3)
            }]
        );
    }

    /// Writes the fuzz target's seeds (`fuzz/corpus/pe/seed-*`): the test drivers, unsigned,
    /// PE32, without version, signed and nested-signed by osslsigncode. Run by hand:
    /// `cargo test --lib write_pe_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/corpus/pe"]
    fn write_pe_fuzz_seeds() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pe");
        std::fs::create_dir_all(&out).unwrap();
        let driver = Builder::driver();
        let mut i386 = Builder::driver();
        i386.machine = 0x14c;
        i386.plus = false;
        let mut bare = Builder::driver();
        bare.version = None;
        for (name, b) in [
            ("amd64", &driver),
            ("i386-pe32", &i386),
            ("no-version", &bare),
        ] {
            std::fs::write(out.join(format!("seed-{name}.sys")), b.build()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let unsigned = dir.path().join("unsigned.sys");
        std::fs::write(&unsigned, driver.build()).unwrap();
        let vendor = make_cert(
            dir.path(),
            "vendor",
            "/O=Virtio Test Org/CN=Virtio Test Signer",
        );
        let attest = make_cert(dir.path(), "attest", "/O=Second Test Org");
        sign(&unsigned, &out.join("seed-signed.sys"), &vendor, false);
        sign(
            &out.join("seed-signed.sys"),
            &out.join("seed-nested.sys"),
            &attest,
            true,
        );
    }

    /// A real signed kernel driver, when one is given (its licence keeps it out of the
    /// repository): `VIRTIO_MIGRATE_REAL_DRIVER=/path/to/driver.sys cargo test --lib
    /// real_driver -- --ignored --nocapture`. Prints what a check of it costs.
    #[test]
    #[ignore = "needs VIRTIO_MIGRATE_REAL_DRIVER"]
    fn real_driver() {
        let path = std::env::var("VIRTIO_MIGRATE_REAL_DRIVER").expect("VIRTIO_MIGRATE_REAL_DRIVER");
        let bytes = std::fs::read(&path).unwrap();
        let img = read(&bytes).unwrap();
        println!("{path}: {}", img.summary());
        println!(
            "cost: {} reads, {} bytes of {}",
            img.cost.reads, img.cost.bytes, img.size
        );
        println!("{}", serde_json::to_string_pretty(&img).unwrap());
        assert!(img.is_signed());
        assert!(img.signer().is_some());
        assert!(img.problems(Some(img.machine), true).is_empty());
    }
}
