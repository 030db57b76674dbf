//! Backups of a domain's definition under `STATE_DIR/backups/<uuid>/<id>/`:
//! `persistent.xml` (INACTIVE|SECURE, what rollback defines), `live.xml` (when it was running),
//! `new.xml` (the definition the run was about to apply) and `meta.json`.
//! Every file is fsynced with its directory before the run goes on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{clock, durable};

/// Why a backup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// The original definition before `convert` changed it: what `rollback` restores by default.
    BeforeConvert,
    /// The definition a `rollback` replaced (so the rollback itself can be undone).
    BeforeRollback,
}

/// What `meta.json` records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupMeta {
    pub id: String,
    pub uuid: String,
    pub name: String,
    pub created: String,
    pub kind: BackupKind,
    /// Whether the domain was running when the backup was taken.
    pub was_running: bool,
    pub command: String,
    /// The libvirt connection URI the domain lives on (`None`: a backup from before it was
    /// recorded), so that `rollback --list` shows only the connection's domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// One backup on disk.
#[derive(Debug, Clone)]
pub struct Backup {
    pub meta: BackupMeta,
    pub dir: PathBuf,
}

/// What to back up.
pub struct BackupContent<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub kind: BackupKind,
    pub command: &'a str,
    pub persistent_xml: &'a str,
    pub live_xml: Option<&'a str>,
    pub new_xml: Option<&'a str>,
    /// The connection URI (libvirt's canonical form, `virConnectGetURI`).
    pub uri: Option<&'a str>,
}

fn domain_dir(state_dir: &Path, uuid: &str) -> PathBuf {
    state_dir.join("backups").join(uuid)
}

impl Backup {
    /// Reserve a fresh backup id (a directory named by UTC time) for the domain.
    pub fn reserve(state_dir: &Path, uuid: &str) -> io::Result<(String, PathBuf)> {
        let parent = domain_dir(state_dir, uuid);
        durable::create_dir(&parent)?;
        let stamp = clock::compact_stamp(SystemTime::now());
        for n in 0u32..1000 {
            let id = if n == 0 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let dir = parent.join(&id);
            // 0700 like the state directory: the backup holds the SECURE definition.
            let made = {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new().mode(0o700).create(&dir)
            };
            match made {
                Ok(()) => {
                    durable::sync_dir(&parent)?;
                    return Ok((id, dir));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free backup name under {}",
            parent.display()
        )))
    }

    /// Write the backup files into a reserved directory.
    pub fn write(id: &str, dir: &Path, c: &BackupContent<'_>) -> io::Result<Backup> {
        durable::write_new(&dir.join("persistent.xml"), c.persistent_xml.as_bytes())?;
        if let Some(live) = c.live_xml {
            durable::write_new(&dir.join("live.xml"), live.as_bytes())?;
        }
        if let Some(new) = c.new_xml {
            durable::write_new(&dir.join("new.xml"), new.as_bytes())?;
        }
        let meta = BackupMeta {
            id: id.to_string(),
            uuid: c.uuid.to_string(),
            name: c.name.to_string(),
            created: clock::rfc3339(SystemTime::now()),
            kind: c.kind,
            was_running: c.live_xml.is_some(),
            command: c.command.to_string(),
            uri: c.uri.map(str::to_string),
        };
        let text = serde_json::to_string_pretty(&meta).map_err(io::Error::other)?;
        durable::write_new(&dir.join("meta.json"), text.as_bytes())?;
        Ok(Backup {
            meta,
            dir: dir.to_path_buf(),
        })
    }

    /// Load one backup of a domain by id.
    pub fn load(state_dir: &Path, uuid: &str, id: &str) -> io::Result<Backup> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid backup id {id:?}"),
            ));
        }
        let dir = domain_dir(state_dir, uuid).join(id);
        let text = fs::read_to_string(dir.join("meta.json"))?;
        let meta: BackupMeta = serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Backup { meta, dir })
    }

    /// Every complete backup (with `meta.json`), of one domain or of all, oldest first.
    pub fn list(state_dir: &Path, uuid: Option<&str>) -> io::Result<Vec<Backup>> {
        let root = state_dir.join("backups");
        let uuids: Vec<String> = match uuid {
            Some(u) => vec![u.to_string()],
            None => match fs::read_dir(&root) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            },
        };
        let mut out = Vec::new();
        for u in uuids {
            let rd = match fs::read_dir(domain_dir(state_dir, &u)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in rd.filter_map(|e| e.ok()) {
                if let Some(id) = entry.file_name().to_str() {
                    if let Ok(b) = Backup::load(state_dir, &u, id) {
                        out.push(b);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (a.meta.created.as_str(), a.meta.id.as_str())
                .cmp(&(b.meta.created.as_str(), b.meta.id.as_str()))
        });
        Ok(out)
    }

    /// Remove a backup that no run depends on (the run that took it stopped before changing
    /// anything): `rollback --list` must not offer it as a state to go back to.
    pub fn discard(state_dir: &Path, uuid: &str, id: &str) -> io::Result<()> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid backup id {id:?}"),
            ));
        }
        let parent = domain_dir(state_dir, uuid);
        fs::remove_dir_all(parent.join(id))?;
        durable::sync_dir(&parent)
    }

    /// The backed-up persistent definition, byte for byte.
    pub fn persistent_xml(&self) -> io::Result<String> {
        fs::read_to_string(self.dir.join("persistent.xml"))
    }

    /// The definition the run was about to apply, when recorded.
    pub fn new_xml(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(self.dir.join("new.xml")) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
