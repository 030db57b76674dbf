//! Facts about the installed Windows, read from its SYSTEM and SOFTWARE hives: the current
//! control set, product, version, build, edition, architecture, host name and the family name
//! an operator knows it by ("Windows Server 2008 R2", "Windows 11").
//!
//! Where each fact lives and its traps: Windows 11 still calls itself "Windows 10" in
//! `ProductName` (client build ≥ 22000 is Windows 11); Windows 10 and Server 2016+ still say "6.3"
//! in `CurrentVersion` (the DWORDs `CurrentMajorVersionNumber`/`CurrentMinorVersionNumber` say
//! 10.0); Server 10.0 releases are told apart by product name or build.

use anyhow::Context;
use serde::Serialize;

use crate::inspect::hive::{Hive, Key, Value};

/// Key of the version values in SOFTWARE.
pub const CURRENT_VERSION_KEY: &str = r"Microsoft\Windows NT\CurrentVersion";

/// A hive together with the name it is mounted under (`SYSTEM`, `SOFTWARE`), so that every
/// lookup error and every piece of evidence names the full key path.
#[derive(Clone, Copy)]
pub struct NamedHive<'a> {
    /// `SYSTEM` or `SOFTWARE`.
    pub name: &'static str,
    pub hive: &'a Hive,
}

impl<'a> NamedHive<'a> {
    /// Name a hive.
    pub fn new(name: &'static str, hive: &'a Hive) -> NamedHive<'a> {
        NamedHive { name, hive }
    }

    /// `SYSTEM\path` (or `SYSTEM` for the root).
    pub fn path(&self, path: &str) -> String {
        if path.is_empty() {
            self.name.to_string()
        } else {
            format!(r"{}\{}", self.name, path)
        }
    }

    /// The key at `path` (case-insensitive, `\`-separated), with the path in the error.
    pub fn key(&self, path: &str) -> anyhow::Result<Option<Key>> {
        self.hive
            .key(path)
            .with_context(|| format!("reading key {}", self.path(path)))
    }

    /// The value `name` of the key at `path`; `None` when the key or the value is absent.
    pub fn value(&self, path: &str, name: &str) -> anyhow::Result<Option<Value>> {
        match self.key(path)? {
            Some(key) => self.value_of(&key, path, name),
            None => Ok(None),
        }
    }

    /// The value `name` of an already opened key (whose path is `path`, for messages).
    pub fn value_of(&self, key: &Key, path: &str, name: &str) -> anyhow::Result<Option<Value>> {
        self.hive
            .value(key, name)
            .with_context(|| format!(r"reading value {}\{}", self.path(path), name))
    }

    /// The subkeys of an already opened key (whose path is `path`, for messages).
    pub fn subkeys_of(&self, key: &Key, path: &str) -> anyhow::Result<Vec<Key>> {
        self.hive
            .subkeys(key)
            .with_context(|| format!("listing the subkeys of {}", self.path(path)))
    }

    /// The subkey `name` of an already opened key (whose path is `path`, for messages), found
    /// by name through the subkey list's hashes (no scan of the list's key nodes).
    pub fn subkey_of(&self, key: &Key, path: &str, name: &str) -> anyhow::Result<Option<Key>> {
        self.hive
            .subkey(key, name)
            .with_context(|| format!(r"reading key {}\{}", self.path(path), name))
    }

    /// The values of an already opened key (whose path is `path`, for messages).
    pub fn values_of(&self, key: &Key, path: &str) -> anyhow::Result<Vec<(String, Value)>> {
        self.hive
            .values(key)
            .with_context(|| format!("listing the values of {}", self.path(path)))
    }

    /// The text of a string value, or `None` when absent or not a string.
    pub fn string(&self, path: &str, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .value(path, name)?
            .and_then(|v| v.as_str().map(str::to_string)))
    }

    /// A DWORD/QWORD value as a number, or `None` when absent or not a number.
    pub fn number(&self, path: &str, name: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.value(path, name)?.and_then(|v| v.as_u64()))
    }
}

/// A guest string quoted for evidence: `"text"`, with quotes and control characters escaped
/// (backslashes of registry paths are kept as they are).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of guest strings quoted for evidence: `["a", "b"]`.
pub fn quote_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A value as evidence shows it: numbers in decimal, strings quoted, lists bracketed.
pub fn show_value(value: &Value) -> String {
    match value {
        Value::Dword(n) => format!("{n} (REG_DWORD)"),
        Value::Qword(n) => format!("{n} (REG_QWORD)"),
        Value::Sz(s) => quote(s),
        Value::ExpandSz(s) => format!("{} (REG_EXPAND_SZ)", quote(s)),
        Value::MultiSz(list) => format!("{} (REG_MULTI_SZ)", quote_list(list)),
        Value::Binary(data) => {
            let shown: Vec<String> = data.iter().take(16).map(|b| format!("{b:02x}")).collect();
            let more = if data.len() > 16 { " …" } else { "" };
            format!(
                "hex:{}{more} (REG_BINARY, {} bytes)",
                shown.join(","),
                data.len()
            )
        }
        Value::Other { value_type, data } => {
            format!("type {value_type}, {} bytes", data.len())
        }
    }
}

/// A control set of SYSTEM (`ControlSet001` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ControlSet(pub u32);

/// What `SYSTEM\Select` says, and the control set chosen from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectInfo {
    /// `Current`: the set the last boot used.
    pub current: Option<u32>,
    /// `Default`: the set the next boot uses.
    pub default: Option<u32>,
    /// `LastKnownGood`.
    pub last_known_good: Option<u32>,
    /// The set judged: `Default`, else `Current` when `Default` is missing.
    pub set: ControlSet,
    /// The values read, for evidence.
    pub evidence: String,
}

impl ControlSet {
    /// The key name, `ControlSet%03d`.
    pub fn name(&self) -> String {
        format!("ControlSet{:03}", self.0)
    }

    /// The control set the guest last booted with: `SYSTEM\Select` value `Current`.
    pub fn current(system: &Hive) -> anyhow::Result<ControlSet> {
        let system = NamedHive::new("SYSTEM", system);
        let current = system
            .value("Select", "Current")?
            .context(r"SYSTEM\Select\Current is absent: cannot tell the current control set")?;
        control_set_number(&current, "Current").map(ControlSet)
    }

    /// The control set the next boot uses: `SYSTEM\Select` value `Default` — the Select key
    /// records "which control set will be used to start it next time" (TechNet cc978528; KB
    /// 102984 "REG: ControlSet\Select Subkey Entries") — else `Current` when `Default` is
    /// missing.
    pub fn next_boot(system: &Hive) -> anyhow::Result<SelectInfo> {
        let sys = NamedHive::new("SYSTEM", system);
        let read = |name: &str| -> anyhow::Result<Option<Value>> { sys.value("Select", name) };
        let current_v = read("Current")?;
        let default_v = read("Default")?;
        let lkg_v = read("LastKnownGood")?;
        let number = |v: &Option<Value>, name: &str| -> anyhow::Result<Option<u32>> {
            v.as_ref().map(|v| control_set_number(v, name)).transpose()
        };
        let current = number(&current_v, "Current")?;
        let default = number(&default_v, "Default")?;
        let last_known_good = number(&lkg_v, "LastKnownGood").ok().flatten();
        let set = default.or(current).context(
            r"SYSTEM\Select has neither Default nor Current: cannot tell the control set",
        )?;
        let shown = |v: &Option<Value>| v.as_ref().map_or("absent".to_string(), show_value);
        let evidence = format!(
            r"SYSTEM\Select\Default = {}, Current = {}, LastKnownGood = {} → ControlSet{set:03}{}",
            shown(&default_v),
            shown(&current_v),
            shown(&lkg_v),
            match (current, default) {
                (_, None) => " (Default absent: Current used)",
                (Some(c), Some(d)) if c != d => " (the last boot used another set)",
                _ => "",
            }
        );
        Ok(SelectInfo {
            current,
            default,
            last_known_good,
            set: ControlSet(set),
            evidence,
        })
    }
}

/// A `Select` value as a control set number (1..=999).
fn control_set_number(value: &Value, name: &str) -> anyhow::Result<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=999).contains(n))
        .with_context(|| {
            format!(
                r"SYSTEM\Select\{name} = {} is not a control set number",
                show_value(value)
            )
        })
}

/// A virtio driver's version as found in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverVersion {
    /// `viostor`, `vioscsi`, `netkvm`.
    pub driver: String,
    /// The version: the driver file's version resource, else the staged INF's `DriverVer`.
    pub version: String,
    /// Where it was read.
    pub from: String,
}

/// What the hives say about the installed Windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowsFacts {
    /// The control set of the next boot (`Select\Default`, else `Current`), e.g.
    /// `ControlSet001`.
    pub control_set: String,
    /// `ProductName` as written (Windows 11 still says "Windows 10 …").
    pub product_name: Option<String>,
    /// Major version: `CurrentMajorVersionNumber`, else parsed from `CurrentVersion`.
    pub major: Option<u32>,
    /// Minor version: `CurrentMinorVersionNumber`, else parsed from `CurrentVersion`.
    pub minor: Option<u32>,
    /// `CurrentBuildNumber` (else `CurrentBuild`).
    pub build: Option<u32>,
    /// `InstallationType`: "Server", "Server Core", "Client".
    pub installation_type: Option<String>,
    /// `EditionID`, e.g. "ServerStandard", "Professional".
    pub edition: Option<String>,
    /// `PROCESSOR_ARCHITECTURE` of the system environment: "AMD64", "x86".
    pub architecture: Option<String>,
    /// `Tcpip\Parameters\Hostname`.
    pub hostname: Option<String>,
    /// A server release (by installation type, else product name or edition).
    pub server: bool,
    /// The release as an operator names it: "Windows Server 2016", "Windows 11".
    pub family: String,
    /// The virtio drivers' versions found by the verdict (installed files, staged packages): the
    /// virtio-win build of the guest.
    pub driver_versions: Vec<DriverVersion>,
    /// The QEMU guest agent service: [`QemuGa::read`].
    pub qemu_ga: QemuGa,
}

/// The QEMU guest agent service in the current control set. The qemu-ga installer of the
/// virtio-win ISO registers it as `Services\QEMU-GA` (display name "QEMU Guest Agent"); service
/// `Start` values: 2 automatic, 3 manual, 4 disabled (Microsoft, "CurrentControlSet\Services
/// Subkey Entries"). Without a running agent, libvirt's `guest-ping` on the
/// `org.qemu.guest_agent.0` channel never answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum QemuGa {
    /// No `Services\QEMU-GA` key.
    Absent,
    /// Installed with this `Start` (absent value: `None`).
    Installed { start: Option<u32> },
}

impl QemuGa {
    /// The service key name.
    pub const SERVICE: &'static str = "QEMU-GA";

    /// Read `<control set>\Services\QEMU-GA` from the SYSTEM hive.
    pub fn read(system: &NamedHive<'_>, control_set: &str) -> anyhow::Result<QemuGa> {
        let path = format!(r"{control_set}\Services\{}", QemuGa::SERVICE);
        if system.key(&path)?.is_none() {
            return Ok(QemuGa::Absent);
        }
        let start = system
            .number(&path, "Start")?
            .and_then(|n| u32::try_from(n).ok());
        Ok(QemuGa::Installed { start })
    }

    /// Installed and not disabled: it starts with Windows (or on demand).
    pub fn will_answer(self) -> bool {
        matches!(self, QemuGa::Installed { start } if start != Some(4))
    }
}

impl WindowsFacts {
    /// Read the facts from the SYSTEM and SOFTWARE hives.
    pub fn read(system: &Hive, software: &Hive) -> anyhow::Result<WindowsFacts> {
        let select = ControlSet::next_boot(system)?;
        WindowsFacts::read_partial(system, Some(software), &select)
    }

    /// Read the facts from the SYSTEM hive and, when it could be opened, the SOFTWARE hive
    /// (without it the version, product and edition are unknown).
    pub fn read_partial(
        system: &Hive,
        software: Option<&Hive>,
        select: &SelectInfo,
    ) -> anyhow::Result<WindowsFacts> {
        let control_set = select.set.name();
        let sys = NamedHive::new("SYSTEM", system);
        let sw = software.map(|h| NamedHive::new("SOFTWARE", h));
        let cv = CURRENT_VERSION_KEY;
        let sw_string = |name: &str| -> anyhow::Result<Option<String>> {
            match &sw {
                Some(sw) => sw.string(cv, name),
                None => Ok(None),
            }
        };
        let sw_number = |name: &str| -> anyhow::Result<Option<u64>> {
            match &sw {
                Some(sw) => sw.number(cv, name),
                None => Ok(None),
            }
        };

        let product_name = sw_string("ProductName")?;
        let installation_type = sw_string("InstallationType")?;
        let edition = sw_string("EditionID")?;
        let build = match sw_string("CurrentBuildNumber")? {
            Some(s) => leading_number(&s),
            None => sw_string("CurrentBuild")?.and_then(|s| leading_number(&s)),
        };
        let dword = |name: &str| -> anyhow::Result<Option<u32>> {
            Ok(sw_number(name)?.and_then(|n| u32::try_from(n).ok()))
        };
        let (mut major, mut minor) = match (
            dword("CurrentMajorVersionNumber")?,
            dword("CurrentMinorVersionNumber")?,
        ) {
            (Some(major), minor) => (Some(major), Some(minor.unwrap_or(0))),
            (None, _) => match sw_string("CurrentVersion")? {
                Some(s) => parse_version(&s),
                None => (None, None),
            },
        };
        // Windows 10 and later keep "6.3" in CurrentVersion; their builds start at 10240.
        if build.is_some_and(|b| b >= 10240) && major.is_some_and(|m| m < 10) {
            major = Some(10);
            minor = Some(0);
        }

        let architecture = sys.string(
            &format!(r"{control_set}\Control\Session Manager\Environment"),
            "PROCESSOR_ARCHITECTURE",
        )?;
        let hostname = sys.string(
            &format!(r"{control_set}\Services\Tcpip\Parameters"),
            "Hostname",
        )?;

        let server = is_server(
            installation_type.as_deref(),
            product_name.as_deref(),
            edition.as_deref(),
        );
        let family = family_name(major, minor, build, server, product_name.as_deref());
        let qemu_ga = QemuGa::read(&sys, &control_set)?;
        Ok(WindowsFacts {
            control_set,
            product_name,
            major,
            minor,
            build,
            installation_type,
            edition,
            architecture,
            hostname,
            server,
            family,
            qemu_ga,
            driver_versions: Vec::new(),
        })
    }

    /// Windows Server 2019 or later (10.0, build ≥ 17763), whose SAN policy may take data disks
    /// offline after a bus change.
    pub fn is_server_2019_or_later(&self) -> bool {
        self.server && self.major == Some(10) && self.build.is_some_and(|b| b >= 17763)
    }

    /// One line for the human report.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.product_name {
            parts.push(format!("ProductName {}", quote(p)));
        }
        match (self.major, self.minor) {
            (Some(a), Some(b)) => parts.push(format!("version {a}.{b}")),
            (Some(a), None) => parts.push(format!("version {a}")),
            _ => {}
        }
        if let Some(b) = self.build {
            parts.push(format!("build {b}"));
        }
        for s in [&self.installation_type, &self.edition, &self.architecture]
            .into_iter()
            .flatten()
        {
            parts.push(s.clone());
        }
        if let Some(h) = &self.hostname {
            parts.push(format!("host {h}"));
        }
        parts.push(self.control_set.clone());
        for v in &self.driver_versions {
            parts.push(format!("{} {}", v.driver, v.version));
        }
        format!("{} ({})", self.family, parts.join(", "))
    }
}

/// The number at the start of `s` ("7601", "14393.693" → 14393).
fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// "6.1" → (6, 1); "5.2" → (5, 2); anything else → what can be read.
fn parse_version(s: &str) -> (Option<u32>, Option<u32>) {
    let mut parts = s.trim().splitn(2, '.');
    let major = parts.next().and_then(leading_number);
    let minor = parts.next().and_then(leading_number);
    (major, minor)
}

/// Server or client: `InstallationType` decides when present, else product name or edition.
fn is_server(
    installation_type: Option<&str>,
    product: Option<&str>,
    edition: Option<&str>,
) -> bool {
    if let Some(t) = installation_type {
        let t = t.to_ascii_lowercase();
        if t.starts_with("server") || t.contains("nano") {
            return true;
        }
        if t.starts_with("client") {
            return false;
        }
    }
    product.is_some_and(|p| p.to_ascii_lowercase().contains("server"))
        || edition.is_some_and(|e| e.to_ascii_lowercase().starts_with("server"))
}

/// The family name from version, build, server flag and product name.
pub fn family_name(
    major: Option<u32>,
    minor: Option<u32>,
    build: Option<u32>,
    server: bool,
    product: Option<&str>,
) -> String {
    let pick = |server_name: &str, client_name: &str| {
        if server {
            server_name.to_string()
        } else {
            client_name.to_string()
        }
    };
    match (major, minor) {
        (Some(10), _) if server => {
            let product = product.unwrap_or("");
            let by_name = ["2025", "2022", "2019", "2016"]
                .into_iter()
                .find(|year| product.contains(year));
            let by_build = match build {
                Some(b) if b >= 26100 => Some("2025"),
                Some(b) if b >= 20348 => Some("2022"),
                Some(b) if b >= 17763 => Some("2019"),
                Some(b) if b >= 14393 => Some("2016"),
                _ => None,
            };
            match by_name.or(by_build) {
                Some(year) => format!("Windows Server {year}"),
                None => "Windows Server (10.0)".to_string(),
            }
        }
        (Some(10), _) => {
            if build.is_some_and(|b| b >= 22000) {
                "Windows 11".to_string()
            } else {
                "Windows 10".to_string()
            }
        }
        (Some(6), Some(3)) => pick("Windows Server 2012 R2", "Windows 8.1"),
        (Some(6), Some(2)) => pick("Windows Server 2012", "Windows 8"),
        (Some(6), Some(1)) => pick("Windows Server 2008 R2", "Windows 7"),
        (Some(6), Some(0)) => pick("Windows Server 2008", "Windows Vista"),
        (Some(5), Some(2)) => pick("Windows Server 2003", "Windows XP x64"),
        (Some(5), Some(1)) => "Windows XP".to_string(),
        (Some(5), Some(0)) => "Windows 2000".to_string(),
        (Some(a), Some(b)) => format!("Windows {a}.{b}"),
        _ => product
            .map(str::to_string)
            .unwrap_or_else(|| "Windows (unknown version)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_handle_the_version_traps() {
        // Windows 11 keeps "Windows 10" in its product name.
        assert_eq!(
            family_name(
                Some(10),
                Some(0),
                Some(22631),
                false,
                Some("Windows 10 Pro")
            ),
            "Windows 11"
        );
        assert_eq!(
            family_name(
                Some(10),
                Some(0),
                Some(19045),
                false,
                Some("Windows 10 Pro")
            ),
            "Windows 10"
        );
        // Server 10.0 by name, else by build.
        assert_eq!(
            family_name(
                Some(10),
                Some(0),
                Some(17763),
                true,
                Some("Windows Server 2019 Datacenter")
            ),
            "Windows Server 2019"
        );
        assert_eq!(
            family_name(
                Some(10),
                Some(0),
                Some(20348),
                true,
                Some("Windows Server Datacenter")
            ),
            "Windows Server 2022"
        );
        assert_eq!(
            family_name(Some(10), Some(0), Some(26100), true, None),
            "Windows Server 2025"
        );
        assert_eq!(
            family_name(Some(10), Some(0), Some(14393), true, None),
            "Windows Server 2016"
        );
        assert_eq!(
            family_name(Some(6), Some(1), Some(7601), true, None),
            "Windows Server 2008 R2"
        );
        assert_eq!(
            family_name(Some(6), Some(3), Some(9600), false, None),
            "Windows 8.1"
        );
        assert_eq!(family_name(None, None, None, false, Some("Odd")), "Odd");
    }

    #[test]
    fn versions_and_builds_parse_leniently() {
        assert_eq!(parse_version("6.3"), (Some(6), Some(3)));
        assert_eq!(parse_version(" 5.2 "), (Some(5), Some(2)));
        assert_eq!(parse_version("x"), (None, None));
        assert_eq!(leading_number("14393.693"), Some(14393));
        assert_eq!(leading_number("99999999999999"), None);
        assert_eq!(leading_number(""), None);
    }

    #[test]
    fn server_detection_prefers_installation_type() {
        assert!(is_server(Some("Server Core"), None, None));
        assert!(!is_server(Some("Client"), Some("Windows Server?"), None));
        assert!(is_server(
            None,
            Some("Windows Server 2008 R2 Standard"),
            None
        ));
        assert!(is_server(None, None, Some("ServerStandard")));
        assert!(!is_server(
            None,
            Some("Windows 7 Professional"),
            Some("Professional")
        ));
    }
}
