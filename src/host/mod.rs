//! The libvirt host: a connection that fails with one line a person can act on, domains found the
//! way virsh finds them (name, UUID or id), and the facts only libvirt's API knows about a domain
//! (run state and its reason, persistent or transient, id).
//!
//! This module reads; nothing in it changes the host. [`lifecycle`] is the one place that does
//! (lock, backup, shutdown, define, start, verify, rollback, journal).
//!
//! Owns: every libvirt call. Uses [`crate::domain`] (the facts it completes from the API), not
//! the planner: the lifecycle takes a finished transition (old XML → new XML) however it was
//! planned. May not import the command line ([`crate::cli`]).

pub mod lifecycle;
pub mod remote;

use serde::Serialize;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Once};
use virt::connect::Connect;

use crate::inspect::image::{FileStore, LocalFiles};
use virt::domain::{
    Domain, DomainBlockedReason, DomainCrashedReason, DomainNoStateReason, DomainPMSuspendedReason,
    DomainPausedReason, DomainRunningReason, DomainShutdownReason, DomainShutoffReason,
    DomainState, DomainStateReason,
};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};

/// How much the connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only (`virConnectOpenReadOnly`): enough to list domains and read their definitions;
    /// on most hosts it needs no root.
    ReadOnly,
    /// Full access, needed to define, start and stop domains.
    ReadWrite,
}

/// The likely reason a connection failed, with the advice to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectCause {
    /// The daemon's socket exists but this user may not open it.
    PermissionDenied { socket: Option<String> },
    /// Nothing listens on the daemon's socket (missing socket or connection refused).
    DaemonNotRunning { socket: Option<String> },
    /// A `test:///PATH` node file that does not exist.
    NodeFileMissing { path: String },
    /// A `test:///PATH` node file that cannot be read or is not well-formed XML.
    NodeFileUnreadable { path: String, reason: String },
    /// libvirt has no driver for the URI's scheme.
    NoDriver,
    /// Authentication was refused.
    AuthFailed,
    /// Anything else: libvirt's own message says what.
    Other,
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |s: &Option<String>| s.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
        match self {
            ConnectCause::PermissionDenied { socket } => write!(
                f,
                "permission denied on the libvirt socket{}: run as root (or as a member of the libvirt group), or use qemu:///session for your own guests",
                at(socket)
            ),
            ConnectCause::DaemonNotRunning { socket } => write!(
                f,
                "no libvirt daemon answers{}: start libvirtd (or virtqemud), or name another host with -c URI",
                socket.as_ref().map(|s| format!(" on {s}")).unwrap_or_default()
            ),
            ConnectCause::NodeFileMissing { path } => {
                write!(f, "test driver node file {path} does not exist (test:/// needs an absolute path)")
            }
            ConnectCause::NodeFileUnreadable { path, reason } => {
                write!(f, "test driver node file {path} cannot be used: {reason}")
            }
            ConnectCause::NoDriver => write!(
                f,
                "libvirt has no driver for this URI: check its spelling (e.g. qemu:///system, qemu+ssh://host/system)"
            ),
            ConnectCause::AuthFailed => write!(f, "authentication failed"),
            ConnectCause::Other => write!(f, "libvirt refused the connection"),
        }
    }
}

/// What went wrong talking to the host. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The connection could not be opened.
    #[error("cannot connect to {uri}: {cause}{}", libvirt_suffix(.libvirt))]
    Connect {
        uri: String,
        cause: ConnectCause,
        /// libvirt's own message, when libvirt was asked.
        libvirt: Option<String>,
    },
    /// No domain has this name, UUID or id.
    #[error("no domain named, with UUID or with id '{spec}' on {uri}")]
    NoSuchDomain { spec: String, uri: String },
    /// The domain went away while it was being read (a transient domain that stopped).
    #[error("domain {name} no longer exists")]
    Vanished { name: String },
    /// A libvirt call failed.
    #[error("{what}: {message}")]
    Libvirt { what: String, message: String },
}

fn libvirt_suffix(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(" (libvirt: {m})"))
        .unwrap_or_default()
}

/// libvirt's message on one line (libvirt messages may carry newlines).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl HostError {
    /// `Vanished` when libvirt says the domain is gone, else `Libvirt`.
    fn about_domain(name: &str, what: impl Into<String>, e: &VirtError) -> HostError {
        if e.code() == Enum::Known(ErrorNumber::NoDomain) {
            HostError::Vanished {
                name: name.to_string(),
            }
        } else {
            HostError::libvirt(what, e)
        }
    }

    fn libvirt(what: impl Into<String>, e: &VirtError) -> HostError {
        HostError::Libvirt {
            what: what.into(),
            message: one_line(e.message()),
        }
    }
}

/// Where a domain's run state stands, in virsh's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    NoState,
    Running,
    /// Blocked on a resource (virsh says "idle").
    Blocked,
    Paused,
    /// Being shut down ("in shutdown").
    ShuttingDown,
    ShutOff,
    Crashed,
    PmSuspended,
    /// A state number this libvirt binding does not know.
    Unknown,
}

impl PowerState {
    /// The word virsh prints for the state.
    pub fn word(self) -> &'static str {
        match self {
            PowerState::NoState => "no state",
            PowerState::Running => "running",
            PowerState::Blocked => "idle",
            PowerState::Paused => "paused",
            PowerState::ShuttingDown => "in shutdown",
            PowerState::ShutOff => "shut off",
            PowerState::Crashed => "crashed",
            PowerState::PmSuspended => "pmsuspended",
            PowerState::Unknown => "unknown",
        }
    }

    /// The domain has a running QEMU process (anything but shut off, crashed or unknown).
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            PowerState::ShutOff | PowerState::Crashed | PowerState::Unknown
        )
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl Serialize for PowerState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.word())
    }
}

/// What libvirt's API says about a domain (the XML does not carry these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainStatus {
    pub name: String,
    pub uuid: String,
    /// The hypervisor id of a running domain (`virsh list` Id column).
    pub id: Option<u32>,
    pub state: PowerState,
    /// Why it is in that state, in virsh's words (`booted`, `shutdown`, `user`, `unknown`, …).
    pub state_reason: String,
    /// Defined (survives shutdown) or transient (created from XML; vanishes when it stops).
    pub persistent: bool,
}

impl DomainStatus {
    /// `running`, or `shut off (shutdown)` when the reason says more than `unknown`.
    pub fn state_display(&self) -> String {
        if self.state_reason == "unknown" || self.state_reason.is_empty() {
            self.state.word().to_string()
        } else {
            format!("{} ({})", self.state.word(), self.state_reason)
        }
    }

    /// `persistent` or `transient`.
    pub fn persistence_word(&self) -> &'static str {
        if self.persistent {
            "persistent"
        } else {
            "transient"
        }
    }
}

/// An open connection to one libvirt host.
pub struct Host {
    conn: Connect,
    uri: String,
}

static QUIET_LIBVIRT: Once = Once::new();

/// Whether a libvirt URI reaches another machine: it names a host (`qemu://h/system`,
/// `qemu+ssh://root@h/system`) or a network transport (`+ssh`, `+libssh`, `+libssh2`, `+tcp`,
/// `+tls`). See <https://libvirt.org/uri.html>.
pub fn uri_is_remote(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let transport = scheme.split_once('+').map(|(_, t)| t).unwrap_or("");
    if matches!(transport, "ssh" | "libssh" | "libssh2" | "tcp" | "tls") {
        return true;
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    !host.is_empty()
}

impl Host {
    /// Open `uri`. A failure says which URI, the likely cause and what to do, on one line.
    pub fn open(uri: &str, access: Access) -> Result<Host, HostError> {
        // libvirt prints every error to stderr itself unless told not to.
        QUIET_LIBVIRT.call_once(virt::error::clear_error_callback);
        if let Some(cause) = check_test_node_file(uri) {
            return Err(HostError::Connect {
                uri: uri.to_string(),
                cause,
                libvirt: None,
            });
        }
        let opened = match access {
            Access::ReadOnly => Connect::open_read_only(Some(uri)),
            Access::ReadWrite => Connect::open(Some(uri)),
        };
        match opened {
            Ok(conn) => Ok(Host {
                conn,
                uri: uri.to_string(),
            }),
            Err(e) => Err(HostError::Connect {
                uri: uri.to_string(),
                cause: classify_connect_error(&e),
                libvirt: Some(one_line(e.message())),
            }),
        }
    }

    /// The URI this host was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether this host's files are on another machine: the URI names a host or a network
    /// transport. `qemu+ssh://` to this very machine is still remote (its paths are not ours
    /// to assume), `qemu:///system` and `test:///…` are local.
    pub fn is_remote(&self) -> bool {
        uri_is_remote(&self.uri)
    }

    /// Where this host's disk images are read from: this machine's files for a local URI;
    /// otherwise the remote host's storage volumes, through a read-write connection of their
    /// own (libvirt refuses downloads on a read-only one; the store only reads and refreshes
    /// pools).
    pub fn file_store(&self) -> Result<Arc<dyn FileStore>, HostError> {
        if !self.is_remote() {
            return Ok(Arc::new(LocalFiles));
        }
        let rw = Host::open(&self.uri, Access::ReadWrite)?;
        Ok(Arc::new(remote::RemoteFiles::new(rw.conn, &self.uri)))
    }

    /// The libvirt connection, for the operations this module does not wrap.
    pub fn connection(&self) -> &Connect {
        &self.conn
    }

    /// Every domain: active and inactive, persistent and transient.
    pub fn list_domains(&self) -> Result<Vec<Domain>, HostError> {
        self.conn
            .list_all_domains(0)
            .map_err(|e| HostError::libvirt(format!("cannot list the domains on {}", self.uri), &e))
    }

    /// Find a domain like virsh does: an id if `spec` is a number, else a UUID if it looks like
    /// one, else a name (so a domain named `42` is still found when no domain has id 42).
    pub fn lookup(&self, spec: &str) -> Result<Domain, HostError> {
        match find_domain(&self.conn, spec) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(HostError::NoSuchDomain {
                spec: spec.to_string(),
                uri: self.uri.clone(),
            }),
            Err(e) => Err(HostError::libvirt(
                format!("cannot look up domain '{spec}'"),
                &e,
            )),
        }
    }

    /// Name, UUID, id, state with reason, and persistence of `domain`.
    pub fn status(&self, domain: &Domain) -> Result<DomainStatus, HostError> {
        let name = domain
            .name()
            .map_err(|e| HostError::libvirt("cannot read a domain's name", &e))?;
        let uuid = domain.uuid_string().map_err(|e| {
            HostError::about_domain(&name, format!("cannot read the UUID of {name}"), &e)
        })?;
        let (state, reason) = domain.state().map_err(|e| {
            HostError::about_domain(&name, format!("cannot read the state of {name}"), &e)
        })?;
        // virt 0.5 turns a failed virDomainGetState into the unknown state -1 (as an unsigned
        // number) and drops the error; ask again in a way that reports it.
        if state == Enum::Unknown(u32::MAX) {
            if let Err(e) = domain.info() {
                return Err(HostError::about_domain(
                    &name,
                    format!("cannot read the state of {name}"),
                    &e,
                ));
            }
        }
        let persistent = domain.is_persistent().map_err(|e| {
            HostError::about_domain(
                &name,
                format!("cannot tell whether {name} is persistent"),
                &e,
            )
        })?;
        Ok(DomainStatus {
            id: domain.id(),
            state: power_state(state),
            state_reason: reason_word(reason).to_string(),
            persistent,
            name,
            uuid,
        })
    }

    /// The persistent definition (what the next cold boot uses; `virsh dumpxml --inactive`).
    /// Secrets are left out: reading them needs a read-write connection and scan does not need them.
    pub fn inactive_xml(&self, domain: &Domain) -> Result<String, HostError> {
        domain
            .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| {
                let name = domain.name().unwrap_or_default();
                HostError::about_domain(&name, "cannot read the domain definition", &e)
            })
    }

    /// The local path of a storage-pool volume (`<disk type='volume'>`), when it has one: dir,
    /// fs, netfs, logical and disk pools give a file or a block device; rbd, gluster and the
    /// like do not, and an error says so.
    pub fn volume_path(&self, pool: &str, volume: &str) -> Result<String, String> {
        volume_path(&self.conn, pool, volume)
    }

    /// A copy of `facts` whose storage-pool volumes are replaced by their local paths, so the
    /// image can be read; volumes that do not resolve stay as they are (their verdict says why).
    pub fn with_volume_paths(
        &self,
        facts: &crate::domain::DomainFacts,
    ) -> crate::domain::DomainFacts {
        with_volume_paths(&self.conn, facts)
    }
}

/// Find a domain as virsh does: by id (a number), then by UUID, then by name. `Ok(None)` when no
/// domain matches; other libvirt failures are errors.
pub fn find_domain(conn: &Connect, spec: &str) -> Result<Option<Domain>, VirtError> {
    let not_found = |e: &VirtError| e.code() == Enum::Known(ErrorNumber::NoDomain);
    if let Ok(id) = spec.parse::<u32>() {
        match conn.lookup_domain_by_id(id) {
            Ok(d) => return Ok(Some(d)),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if looks_like_uuid(spec) {
        match conn.lookup_domain_by_uuid_string(spec) {
            Ok(d) => return Ok(Some(d)),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    match conn.lookup_domain_by_name(spec) {
        Ok(d) => Ok(Some(d)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The local path of a storage-pool volume; see [`Host::volume_path`].
pub fn volume_path(conn: &Connect, pool: &str, volume: &str) -> Result<String, String> {
    let p = conn
        .lookup_storage_pool_by_name(pool)
        .map_err(|e| format!("storage pool {pool}: {}", e.message()))?;
    let v = p
        .lookup_storage_vol_by_name(volume)
        .map_err(|e| format!("volume {volume} in pool {pool}: {}", e.message()))?;
    let path = v
        .path()
        .map_err(|e| format!("path of volume {pool}/{volume}: {}", e.message()))?;
    if !path.starts_with('/') {
        return Err(format!(
            "volume {pool}/{volume} is {path}, not a local file or device"
        ));
    }
    Ok(path)
}

/// A copy of `facts` with storage-pool volumes resolved; see [`Host::with_volume_paths`].
pub fn with_volume_paths(
    conn: &Connect,
    facts: &crate::domain::DomainFacts,
) -> crate::domain::DomainFacts {
    use crate::domain::DiskSource;
    let mut out = facts.clone();
    for d in out.disks.iter_mut() {
        if let DiskSource::Volume { pool, volume } = &d.source {
            if let Ok(path) = volume_path(conn, pool, volume) {
                d.source = if path.starts_with("/dev/") {
                    DiskSource::Block { dev: path }
                } else {
                    DiskSource::File { path }
                };
            }
        }
    }
    out
}

/// `test:///ABS/PATH` points at a node file: check it before libvirt does, because libvirt's XML
/// parser prints its own complaints straight to stderr.
fn check_test_node_file(uri: &str) -> Option<ConnectCause> {
    let rest = uri.strip_prefix("test://")?;
    let path = rest.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || path == "/default" || path == "/" {
        return None;
    }
    let path_shown = path.to_string();
    if !Path::new(path).is_absolute() {
        return Some(ConnectCause::NodeFileMissing { path: path_shown });
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(ConnectCause::NodeFileMissing { path: path_shown })
        }
        Err(e) => {
            return Some(ConnectCause::NodeFileUnreadable {
                path: path_shown,
                reason: e.to_string(),
            })
        }
    };
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    match roxmltree::Document::parse_with_options(&text, options) {
        Ok(_) => None,
        Err(e) => Some(ConnectCause::NodeFileUnreadable {
            path: path_shown,
            reason: format!("malformed XML: {e}"),
        }),
    }
}

fn classify_connect_error(e: &VirtError) -> ConnectCause {
    let code = e.code();
    let auth = [
        ErrorNumber::AuthFailed,
        ErrorNumber::AuthCancelled,
        ErrorNumber::AuthUnavailable,
    ]
    .into_iter()
    .any(|n| code == Enum::Known(n));
    classify_connect_message(auth, e.message())
}

/// The cause from libvirt's message (its codes are too coarse: a socket error is `SystemError`).
fn classify_connect_message(auth_error: bool, message: &str) -> ConnectCause {
    let socket = quoted_path(message);
    if auth_error {
        return ConnectCause::AuthFailed;
    }
    if message.contains("no connection driver available") {
        return ConnectCause::NoDriver;
    }
    if message.contains("Permission denied") {
        return ConnectCause::PermissionDenied { socket };
    }
    if message.contains("Failed to connect socket")
        && (message.contains("No such file or directory") || message.contains("Connection refused"))
    {
        return ConnectCause::DaemonNotRunning { socket };
    }
    ConnectCause::Other
}

/// The first `'…'`-quoted part of a libvirt message (libvirt quotes socket paths that way).
fn quoted_path(message: &str) -> Option<String> {
    let start = message.find('\'')? + 1;
    let len = message.get(start..)?.find('\'')?;
    let quoted = message.get(start..start + len)?;
    quoted.starts_with('/').then(|| quoted.to_string())
}

/// 32 hex digits, with or without the four dashes (libvirt accepts both).
fn looks_like_uuid(s: &str) -> bool {
    let hex: Vec<char> = s.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.iter().all(char::is_ascii_hexdigit) && s.len() <= 36
}

fn power_state(state: Enum<DomainState, virt::sys::virDomainState>) -> PowerState {
    match state {
        Enum::Known(DomainState::NoState) => PowerState::NoState,
        Enum::Known(DomainState::Running) => PowerState::Running,
        Enum::Known(DomainState::Blocked) => PowerState::Blocked,
        Enum::Known(DomainState::Paused) => PowerState::Paused,
        Enum::Known(DomainState::Shutdown) => PowerState::ShuttingDown,
        Enum::Known(DomainState::Shutoff) => PowerState::ShutOff,
        Enum::Known(DomainState::Crashed) => PowerState::Crashed,
        Enum::Known(DomainState::PMSuspended) => PowerState::PmSuspended,
        Enum::Unknown(_) => PowerState::Unknown,
    }
}

/// virsh's words for a state reason (`virsh domstate --reason`).
fn reason_word(reason: Enum<DomainStateReason, std::os::raw::c_int>) -> &'static str {
    use DomainStateReason as R;
    let Enum::Known(reason) = reason else {
        return "unknown";
    };
    match reason {
        R::NoState(Enum::Known(DomainNoStateReason::Unknown)) => "unknown",
        R::Running(Enum::Known(r)) => match r {
            DomainRunningReason::Unknown => "unknown",
            DomainRunningReason::Booted => "booted",
            DomainRunningReason::Migrated => "migrated",
            DomainRunningReason::Restored => "restored",
            DomainRunningReason::FromSnapshot => "from snapshot",
            DomainRunningReason::Unpaused => "unpaused",
            DomainRunningReason::MigrationCancelled => "migration canceled",
            DomainRunningReason::SaveCancelled => "save canceled",
            DomainRunningReason::Wakeup => "event wakeup",
            DomainRunningReason::Crashed => "crashed",
            DomainRunningReason::PostCopy => "post-copy",
            DomainRunningReason::PostCopyFailed => "post-copy failed",
        },
        R::Blocked(Enum::Known(DomainBlockedReason::Unknown)) => "unknown",
        R::Paused(Enum::Known(r)) => match r {
            DomainPausedReason::Unknown => "unknown",
            DomainPausedReason::User => "user",
            DomainPausedReason::Migration => "migrating",
            DomainPausedReason::Save => "saving",
            DomainPausedReason::Dump => "dumping",
            DomainPausedReason::IOError => "I/O error",
            DomainPausedReason::Watchdog => "watchdog",
            DomainPausedReason::FromSnapshot => "from snapshot",
            DomainPausedReason::ShuttingDown => "shutting down",
            DomainPausedReason::Snapshot => "creating snapshot",
            DomainPausedReason::Crashed => "crashed",
            DomainPausedReason::StartingUp => "starting up",
            DomainPausedReason::PostCopy => "post-copy",
            DomainPausedReason::PostCopyFailed => "post-copy failed",
            DomainPausedReason::APIError => "api error",
        },
        R::Shutdown(Enum::Known(r)) => match r {
            DomainShutdownReason::Unknown => "unknown",
            DomainShutdownReason::User => "user",
        },
        R::Shutoff(Enum::Known(r)) => match r {
            DomainShutoffReason::Unknown => "unknown",
            DomainShutoffReason::Shutdown => "shutdown",
            DomainShutoffReason::Destroyed => "destroyed",
            DomainShutoffReason::Crashed => "crashed",
            DomainShutoffReason::Migrated => "migrated",
            DomainShutoffReason::Saved => "saved",
            DomainShutoffReason::Failed => "failed",
            DomainShutoffReason::FromSnapshot => "from snapshot",
            DomainShutoffReason::Daemon => "daemon",
        },
        R::Crashed(Enum::Known(r)) => match r {
            DomainCrashedReason::Unknown => "unknown",
            DomainCrashedReason::Panicked => "panicked",
        },
        R::PMSuspended(Enum::Known(DomainPMSuspendedReason::Unknown)) => "unknown",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_domain_that_stopped_has_vanished() {
        // libvirt's test driver, in memory: a transient domain disappears when it is destroyed.
        let host = Host::open("test:///default", Access::ReadWrite).unwrap();
        let xml = "<domain type='test'><name>short-lived</name><memory>65536</memory>\
                   <os><type>hvm</type></os></domain>";
        let d = host.connection().create_domain_xml(xml, 0).unwrap();
        let s = host.status(&d).unwrap();
        assert_eq!((s.state, s.persistent), (PowerState::Running, false));
        assert!(s.id.is_some());
        assert!(host.inactive_xml(&d).unwrap().contains("short-lived"));
        d.destroy().unwrap();
        assert!(matches!(
            host.status(&d),
            Err(HostError::Vanished { name }) if name == "short-lived"
        ));
        assert!(matches!(
            host.inactive_xml(&d),
            Err(HostError::Vanished { .. })
        ));
        // Looked up by name, id or UUID like virsh; "test" is the default host's own domain.
        let by_name = host.status(&host.lookup("test").unwrap()).unwrap();
        let id = by_name.id.unwrap().to_string();
        assert_eq!(
            host.status(&host.lookup(&id).unwrap()).unwrap().name,
            "test"
        );
        assert_eq!(
            host.status(&host.lookup(&by_name.uuid).unwrap())
                .unwrap()
                .name,
            "test"
        );
        assert!(matches!(
            host.lookup("short-lived"),
            Err(HostError::NoSuchDomain { .. })
        ));
    }

    #[test]
    fn uuid_shapes() {
        assert!(looks_like_uuid("5b1d8e0c-2f7a-4c39-9a51-0c2d3e4f5a61"));
        assert!(looks_like_uuid("5b1d8e0c2f7a4c399a510c2d3e4f5a61"));
        assert!(!looks_like_uuid("win2k3-legacy"));
        assert!(!looks_like_uuid("42"));
        assert!(!looks_like_uuid("5b1d8e0c-2f7a-4c39-9a51-0c2d3e4f5a6g"));
        assert!(!looks_like_uuid(
            "5b1d-8e0c-2f7a-4c39-9a51-0c2d-3e4f-5a61--"
        ));
    }

    #[test]
    fn socket_path_is_taken_from_the_message() {
        assert_eq!(
            quoted_path(
                "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied"
            ),
            Some("/var/run/libvirt/libvirt-sock".to_string())
        );
        assert_eq!(
            quoted_path("no connection driver available for xen:///"),
            None
        );
        assert_eq!(quoted_path("odd 'quote"), None);
    }

    #[test]
    fn test_node_file_checks() {
        assert_eq!(check_test_node_file("test:///default"), None);
        assert_eq!(check_test_node_file("qemu:///system"), None);
        assert_eq!(
            check_test_node_file("test:///nonexistent/node.xml"),
            Some(ConnectCause::NodeFileMissing {
                path: "/nonexistent/node.xml".into()
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.xml");
        std::fs::write(&bad, "<node><domain>").unwrap();
        let uri = format!("test://{}", bad.display());
        match check_test_node_file(&uri) {
            Some(ConnectCause::NodeFileUnreadable { reason, .. }) => {
                assert!(reason.starts_with("malformed XML"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn libvirt_messages_are_classified() {
        // The messages libvirt 9.0 gives (seen with virsh on this kind of machine).
        let sock = Some("/var/run/libvirt/libvirt-sock".to_string());
        assert_eq!(
            classify_connect_message(
                false,
                "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied"
            ),
            ConnectCause::PermissionDenied {
                socket: sock.clone()
            }
        );
        assert_eq!(
            classify_connect_message(false, "Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory"),
            ConnectCause::DaemonNotRunning { socket: sock.clone() }
        );
        assert_eq!(
            classify_connect_message(
                false,
                "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused"
            ),
            ConnectCause::DaemonNotRunning { socket: sock }
        );
        assert_eq!(
            classify_connect_message(false, "no connection driver available for xen:///"),
            ConnectCause::NoDriver
        );
        assert_eq!(
            classify_connect_message(true, "authentication failed: no agent is available"),
            ConnectCause::AuthFailed
        );
        assert_eq!(
            classify_connect_message(
                false,
                "Cannot recv data: ssh: Could not resolve hostname nohost"
            ),
            ConnectCause::Other
        );
    }

    #[test]
    fn connect_errors_are_one_line_with_advice() {
        let e = HostError::Connect {
            uri: "qemu:///system".into(),
            cause: ConnectCause::PermissionDenied {
                socket: Some("/run/libvirt/libvirt-sock".into()),
            },
            libvirt: Some(one_line(
                "Failed to connect socket\n to x: Permission denied",
            )),
        };
        let s = e.to_string();
        assert!(!s.contains('\n'));
        assert!(s.starts_with("cannot connect to qemu:///system: permission denied on the libvirt socket (/run/libvirt/libvirt-sock): run as root"), "{s}");
        assert!(
            s.ends_with("(libvirt: Failed to connect socket to x: Permission denied)"),
            "{s}"
        );
    }

    #[test]
    fn remote_uris_are_the_ones_naming_a_host_or_a_network_transport() {
        for uri in [
            "qemu+ssh://root@kvm01/system",
            "qemu+ssh://root@127.0.0.1:2222/system?keyfile=/k&no_verify=1",
            "qemu://kvm01/system",
            "qemu+tcp://10.0.0.1/system",
            "qemu+tls://h.example/system",
            "qemu+libssh2://u@h/system",
        ] {
            assert!(uri_is_remote(uri), "{uri}");
        }
        for uri in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system",
            "test:///default",
            "test:///tmp/node.xml",
            "not a uri",
        ] {
            assert!(!uri_is_remote(uri), "{uri}");
        }
    }
}
