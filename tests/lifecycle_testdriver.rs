//! The lifecycle's API flow on libvirt's test driver (in-process, no daemon): lock, backups,
//! journal, confirmation, define failures, automatic rollback paths, manual rollback and
//! resuming an interrupted run.

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use virt::connect::Connect;
use virt::domain::Domain;
use virtio_migrate::host::lifecycle::backup::Backup;
use virtio_migrate::host::lifecycle::journal::{self, Journal, RunKind, Step};
use virtio_migrate::host::lifecycle::lock::DomainLock;
use virtio_migrate::host::lifecycle::progress::Reporter;
use virtio_migrate::host::lifecycle::{
    self, LifecycleError, LifecycleOptions, OutcomeKind, Transition,
};

const UUID: &str = "6b0b3a2c-9d56-4c1e-8f55-0a1b2c3d4e5f";
const NAME: &str = "win2k8";

fn node_xml(on_poweroff: &str) -> String {
    format!(
        r#"<node>
  <domain type='test'>
    <name>{NAME}</name>
    <uuid>{UUID}</uuid>
    <memory unit='MiB'>512</memory>
    <vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
    <on_poweroff>{on_poweroff}</on_poweroff>
    <devices>
      <disk type='file' device='disk'>
        <source file='/var/lib/libvirt/images/win2k8.qcow2'/>
        <target dev='hda' bus='ide'/>
        <address type='drive' controller='0' bus='0' target='0' unit='0'/>
      </disk>
      <interface type='user'>
        <mac address='52:54:00:aa:bb:cc'/>
        <model type='e1000'/>
      </interface>
    </devices>
  </domain>
</node>
"#
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
    conn: Connect,
    dom: Domain,
}

fn fixture(on_poweroff: &str) -> Fixture {
    virt::error::clear_error_callback();
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    std::fs::write(&node, node_xml(on_poweroff)).unwrap();
    let conn = Connect::open(Some(&format!("test://{}", node.display()))).unwrap();
    let dom = conn.lookup_domain_by_name(NAME).unwrap();
    let state = dir.path().join("state");
    Fixture {
        _dir: dir,
        state,
        conn,
        dom,
    }
}

fn persistent(dom: &Domain) -> String {
    dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE)
        .unwrap()
}

fn options(state: &Path) -> LifecycleOptions {
    let mut o = LifecycleOptions::new("virtio-migrate convert --domain win2k8 (test)");
    o.state_dir = state.to_path_buf();
    o.yes = true;
    o.interactive = false;
    o.shutdown.timeout = Duration::from_secs(5);
    o.verify_time = Some(Duration::from_millis(300));
    o.reporter = Reporter {
        fancy: false,
        quiet: true,
    };
    o
}

fn transition(dom: &Domain) -> Transition {
    let original_xml = persistent(dom);
    Transition {
        new_xml: support::rewrite::to_virtio(&original_xml),
        original_xml,
        blockers: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The steps of the domain's last run (empty when there is no journal).
fn steps(state: &Path) -> Vec<String> {
    journal::read_runs(state, UUID)
        .unwrap_or_default()
        .last()
        .map(|run| {
            run.entries
                .iter()
                .map(|e| e.step.as_str().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn is_running(dom: &Domain) -> bool {
    !lifecycle::shutdown::is_off(dom).unwrap()
}

static NO_INTERRUPT: AtomicBool = AtomicBool::new(false);

#[test]
fn convert_backs_up_journals_defines_starts_and_verifies() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let live_before = f.dom.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE).unwrap();
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert!(
        matches!(
            &out.kind,
            OutcomeKind::Converted {
                started: true,
                verified: true,
                verification: Some(what),
            } if what.contains("no reset, crash or stop")
        ),
        "{:?}",
        out.kind
    );
    let now = persistent(&f.dom);
    assert!(
        now.contains("bus='virtio'") && now.contains("dev='vda'"),
        "{now}"
    );
    assert!(now.contains("<model type='virtio'/>"), "{now}");
    assert!(is_running(&f.dom));

    let backup = Backup::load(&f.state, UUID, &out.backup).unwrap();
    assert_eq!(backup.persistent_xml().unwrap(), t.original_xml);
    assert_eq!(
        backup.new_xml().unwrap().as_deref(),
        Some(t.new_xml.as_str())
    );
    assert_eq!(
        std::fs::read_to_string(backup.dir.join("live.xml")).unwrap(),
        live_before
    );
    assert!(backup.meta.was_running);
    assert_eq!(backup.meta.uuid, UUID);

    assert_eq!(
        steps(&f.state),
        ["begin", "backup", "confirm", "shutdown", "define", "start", "verify", "done"]
    );
    let step_names: Vec<&str> = out.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        step_names,
        ["lock", "backup", "shutdown", "define", "start", "verify"]
    );
    assert!(out.summary().contains("waiting for the guest"));
}

#[test]
fn a_second_run_is_refused_and_told_who_holds_the_lock() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let _held = DomainLock::acquire(&f.state, UUID, NAME, "other-convert-run").unwrap();
    let err =
        lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LifecycleError::Locked { .. }), "{msg}");
    assert!(msg.contains("other-convert-run"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert_eq!(persistent(&f.dom), t.original_xml);
    assert!(Backup::list(&f.state, Some(UUID)).unwrap().is_empty());
}

#[test]
fn without_a_terminal_and_without_yes_nothing_changes() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let mut o = options(&f.state);
    o.yes = false;
    let err = lifecycle::execute(&f.conn, &f.dom, &t, &o, &NO_INTERRUPT).unwrap_err();
    assert!(err.to_string().contains("--yes"), "{err}");
    assert_eq!(persistent(&f.dom), t.original_xml);
    assert!(is_running(&f.dom));
    // Refused before anything is written: no journal, no backup.
    assert!(steps(&f.state).is_empty(), "{:?}", steps(&f.state));
    assert!(Backup::list(&f.state, None).unwrap().is_empty());
}

#[test]
fn blockers_refuse_unless_forced() {
    let f = fixture("destroy");
    let mut t = transition(&f.dom);
    t.blockers = vec!["viostor is not boot-ready".into()];
    let err =
        lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap_err();
    assert!(
        err.to_string().contains("viostor is not boot-ready"),
        "{err}"
    );
    assert_eq!(persistent(&f.dom), t.original_xml);
    let mut o = options(&f.state);
    o.force = true;
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &o, &NO_INTERRUPT).unwrap();
    assert!(matches!(out.kind, OutcomeKind::Converted { .. }));
}

#[test]
fn a_definition_changed_since_planning_is_refused() {
    let f = fixture("destroy");
    let mut t = transition(&f.dom);
    t.original_xml = t.original_xml.replace("win2k8.qcow2", "other.qcow2");
    let err =
        lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap_err();
    assert!(err.to_string().contains("changed since the plan"), "{err}");
}

#[test]
fn an_invalid_new_definition_leaves_the_original_running() {
    let f = fixture("destroy");
    let mut t = transition(&f.dom);
    t.new_xml = t
        .new_xml
        .replace("</devices>", "<not-a-libvirt-element/></devices>");
    let err =
        lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap_err();
    assert!(err.to_string().contains("define failed"), "{err}");
    assert!(err.to_string().contains("started again"), "{err}");
    assert_eq!(persistent(&f.dom), t.original_xml);
    assert!(is_running(&f.dom));
    let s = steps(&f.state);
    assert_eq!(s.last().map(String::as_str), Some("aborted"), "{s:?}");
}

#[test]
fn no_start_defines_and_leaves_it_off() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let mut o = options(&f.state);
    o.start = false;
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &o, &NO_INTERRUPT).unwrap();
    assert_eq!(
        out.kind,
        OutcomeKind::Converted {
            started: false,
            verified: false,
            verification: None
        }
    );
    assert!(!is_running(&f.dom));
    assert!(persistent(&f.dom).contains("dev='vda'"));
}

#[test]
fn rollback_restores_the_byte_identical_definition_and_starts_it() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert_ne!(persistent(&f.dom), t.original_xml);
    let backup = lifecycle::default_backup(&f.state, UUID).unwrap();
    assert_eq!(backup.meta.id, out.backup);
    let back =
        lifecycle::rollback(&f.conn, &f.dom, &backup, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert_eq!(back.kind, OutcomeKind::Restored { started: true });
    assert_eq!(persistent(&f.dom), t.original_xml);
    assert!(is_running(&f.dom));
    // The replaced (converted) definition was kept as a backup of its own.
    let all = Backup::list(&f.state, Some(UUID)).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all
        .iter()
        .any(|b| b.persistent_xml().unwrap().contains("dev='vda'")));
    // The default is still the backup taken before the conversion.
    assert_eq!(
        lifecycle::default_backup(&f.state, UUID).unwrap().meta.id,
        out.backup
    );
}

/// Make the journal and domain look like a convert killed right after `define`.
fn interrupted_after_define(f: &Fixture) -> (Transition, String) {
    interrupted_after_defining(f, transition(&f.dom))
}

/// Like [`interrupted_after_define`] with the given transition.
fn interrupted_after_defining(f: &Fixture, t: Transition) -> (Transition, String) {
    let (id, dir) = Backup::reserve(&f.state, UUID).unwrap();
    let mut j = Journal::begin(&f.state, UUID, &id, RunKind::Convert, NAME, "convert").unwrap();
    j.record(Step::Backup, "").unwrap();
    Backup::write(
        &id,
        &dir,
        &lifecycle::backup::BackupContent {
            uuid: UUID,
            name: NAME,
            kind: lifecycle::backup::BackupKind::BeforeConvert,
            command: "convert",
            persistent_xml: &t.original_xml,
            live_xml: Some("<domain/>"),
            new_xml: Some(&t.new_xml),
            uri: None,
        },
    )
    .unwrap();
    j.record(Step::Confirm, "").unwrap();
    j.record(Step::Shutdown, "").unwrap();
    f.dom.shutdown().unwrap();
    j.record(Step::Define, "").unwrap();
    f.conn
        .define_domain_xml_flags(&t.new_xml, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE)
        .unwrap();
    (t, id)
}

#[test]
fn an_unfinished_run_is_explained_and_blocks_the_next_convert() {
    let f = fixture("destroy");
    let (_, id) = interrupted_after_define(&f);
    let t = transition(&f.dom);
    let err =
        lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LifecycleError::Unfinished(_)), "{msg}");
    assert!(msg.contains("step `define`"), "{msg}");
    assert!(msg.contains("shutoff"), "{msg}");
    assert!(msg.contains("NEW definition"), "{msg}");
    assert!(
        msg.contains(&format!("rollback --domain {NAME} --backup {id}")),
        "{msg}"
    );
    assert!(msg.contains("--resume"), "{msg}");
}

#[test]
fn resume_finishes_an_interrupted_conversion() {
    let f = fixture("destroy");
    let (t, id) = interrupted_after_define(&f);
    let resumed = lifecycle::resume_transition(&f.state, &f.dom).unwrap();
    assert_eq!(resumed.original_xml, t.original_xml);
    let mut o = options(&f.state);
    o.resume = true;
    let out = lifecycle::execute(&f.conn, &f.dom, &resumed, &o, &NO_INTERRUPT).unwrap();
    assert_eq!(out.backup, id);
    assert!(is_running(&f.dom));
    assert!(journal::unfinished_run(&f.state, UUID).unwrap().is_none());
}

#[test]
fn rollback_undoes_an_interrupted_conversion() {
    let f = fixture("destroy");
    let (t, id) = interrupted_after_define(&f);
    let backup = lifecycle::default_backup(&f.state, UUID).unwrap();
    assert_eq!(backup.meta.id, id);
    lifecycle::rollback(&f.conn, &f.dom, &backup, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert_eq!(persistent(&f.dom), t.original_xml);
    assert!(is_running(&f.dom), "it was running when backed up");
    assert!(journal::unfinished_run(&f.state, UUID).unwrap().is_none());
}

#[test]
fn on_poweroff_restart_is_switched_for_the_shutdown_only() {
    let f = fixture("restart");
    let t = transition(&f.dom);
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert!(matches!(out.kind, OutcomeKind::Converted { .. }));
    let now = persistent(&f.dom);
    assert!(now.contains("<on_poweroff>restart</on_poweroff>"), "{now}");
}

#[test]
fn a_torn_journal_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::begin(dir.path(), UUID, "R1", RunKind::Convert, NAME, "c").unwrap();
    j.record(Step::Backup, "").unwrap();
    drop(j);
    let path = journal::journal_path(dir.path(), UUID);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"run\":\"R1\",\"seq\":2,\"ti");
    std::fs::write(&path, text).unwrap();
    let run = journal::unfinished_run(dir.path(), UUID).unwrap().unwrap();
    assert_eq!(run.last_step(), Some(Step::Backup));
    assert_eq!(run.kind(), Some(RunKind::Convert));
}

#[test]
fn a_run_in_progress_is_reported_as_locked_not_as_unfinished() {
    let f = fixture("destroy");
    interrupted_after_define(&f);
    assert!(lifecycle::unfinished_report(&f.state, &f.dom)
        .unwrap()
        .is_some());
    let _held = DomainLock::acquire(&f.state, UUID, NAME, "convert in progress").unwrap();
    let err = lifecycle::unfinished_report(&f.state, &f.dom).unwrap_err();
    assert!(err.to_string().contains("convert in progress"), "{err}");
}

#[test]
fn a_shut_off_guest_stays_off_and_its_rollback_keeps_it_off() {
    let f = fixture("destroy");
    f.dom.destroy().unwrap();
    let t = transition(&f.dom);
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert_eq!(
        out.kind,
        OutcomeKind::Converted {
            started: false,
            verified: false,
            verification: None
        }
    );
    assert!(!is_running(&f.dom), "a shut-off guest was started");
    assert!(persistent(&f.dom).contains("dev='vda'"));
    let backup = lifecycle::default_backup(&f.state, UUID).unwrap();
    assert!(!backup.meta.was_running);
    // Even if someone started it since, the rollback restores the recorded state: off.
    f.dom.create().unwrap();
    let back =
        lifecycle::rollback(&f.conn, &f.dom, &backup, &options(&f.state), &NO_INTERRUPT).unwrap();
    assert_eq!(back.kind, OutcomeKind::Restored { started: false });
    assert_eq!(persistent(&f.dom), t.original_xml);
    assert!(!is_running(&f.dom), "rollback left it running");
}

#[test]
fn start_starts_a_shut_off_guest_and_verifies_it() {
    let f = fixture("destroy");
    f.dom.destroy().unwrap();
    let t = transition(&f.dom);
    let mut o = options(&f.state);
    o.start_if_off = true;
    let out = lifecycle::execute(&f.conn, &f.dom, &t, &o, &NO_INTERRUPT).unwrap();
    assert!(
        matches!(
            out.kind,
            OutcomeKind::Converted {
                started: true,
                verified: true,
                ..
            }
        ),
        "{:?}",
        out.kind
    );
    assert!(is_running(&f.dom));
}

#[test]
fn an_aborted_run_leaves_no_backup_to_offer() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let original = persistent(&f.dom);
    // Interrupted while waiting for the shutdown: the definition is untouched.
    let interrupted = AtomicBool::new(true);
    let err = lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &interrupted)
        .expect_err("an interrupted run");
    assert!(matches!(err, LifecycleError::Interrupted(_)), "{err}");
    assert_eq!(persistent(&f.dom), original);
    assert!(
        Backup::list(&f.state, None).unwrap().is_empty(),
        "an aborted run left a backup behind"
    );
    assert_eq!(steps(&f.state).last().map(String::as_str), Some("aborted"));
    assert!(lifecycle::default_backup(&f.state, UUID).is_err());
}

#[test]
fn a_refused_run_writes_nothing() {
    let f = fixture("destroy");
    let t = transition(&f.dom);
    let mut o = options(&f.state);
    o.yes = false;
    o.interactive = false;
    let err = lifecycle::execute(&f.conn, &f.dom, &t, &o, &NO_INTERRUPT).expect_err("refused");
    assert!(matches!(err, LifecycleError::Refused(_)), "{err}");
    assert!(Backup::list(&f.state, None).unwrap().is_empty());
    assert!(steps(&f.state).is_empty(), "{:?}", steps(&f.state));
}

#[test]
fn resume_on_a_guest_already_running_the_new_definition_only_verifies() {
    let f = fixture("destroy");
    let (t, id) = interrupted_after_define(&f);
    // The interrupted run had started the new definition and was verifying it.
    f.dom.create().unwrap();
    let first_id = f.dom.id();
    let resumed = lifecycle::resume_transition(&f.state, &f.dom).unwrap();
    let mut o = options(&f.state);
    o.resume = true;
    let out = lifecycle::execute(&f.conn, &f.dom, &resumed, &o, &NO_INTERRUPT).unwrap();
    assert_eq!(out.backup, id);
    assert!(
        matches!(out.kind, OutcomeKind::Converted { verified: true, .. }),
        "{:?}",
        out.kind
    );
    // Not shut down and started again: the same running instance, only verified.
    assert!(is_running(&f.dom));
    assert_eq!(f.dom.id(), first_id, "the guest was restarted");
    let s = steps(&f.state);
    assert!(
        !s.iter()
            .any(|x| x == "shutdown" || x == "start" || x == "define"),
        "{s:?}"
    );
    assert_eq!(s.last().map(String::as_str), Some("done"), "{s:?}");
    assert!(s.iter().any(|x| x == "verify"), "{s:?}");
    assert!(persistent(&f.dom).contains("dev='vda'"));
    assert_ne!(persistent(&f.dom), t.original_xml);
}

#[test]
fn a_resumed_run_that_fails_verification_restores_the_original_not_the_new() {
    let f = fixture("destroy");
    let mut t = transition(&f.dom);
    // The new definition has an agent channel the test driver cannot answer on: verify fails.
    t.new_xml = t.new_xml.replace(
        "</devices>",
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>",
    );
    let (t, _) = interrupted_after_defining(&f, t);
    f.dom.create().unwrap();
    let resumed = lifecycle::resume_transition(&f.state, &f.dom).unwrap();
    let mut o = options(&f.state);
    o.resume = true;
    let out = lifecycle::execute(&f.conn, &f.dom, &resumed, &o, &NO_INTERRUPT).unwrap();
    assert!(
        matches!(out.kind, OutcomeKind::RolledBack { .. }),
        "{:?}",
        out.kind
    );
    assert_eq!(persistent(&f.dom), t.original_xml);
}

/// The state directory and every backup in it are root's alone (0700 directories, 0600 files):
/// a backup holds the definition read with VIR_DOMAIN_XML_SECURE (VNC passwords and the like).
#[test]
fn state_directory_and_backups_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture("destroy");
    let t = transition(&f.dom);
    lifecycle::execute(&f.conn, &f.dom, &t, &options(&f.state), &NO_INTERRUPT).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.state), 0o700, "{}", f.state.display());
    let mut seen_files = 0;
    let mut dirs = vec![f.state.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "xml") {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                seen_files += 1;
            }
        }
    }
    assert!(
        seen_files >= 2,
        "no backed-up XML found under {}",
        f.state.display()
    );
}
