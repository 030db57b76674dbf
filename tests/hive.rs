//! The registry hive reader against real hives (made by hivexregedit, see
//! fixtures/hives/reader/make.sh) and two independent readers: notatin (which also replays
//! new-format logs) and hivex (through its Perl binding and `hivexget`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use virtio_migrate::inspect::hive::{Hive, HiveError, HiveState, LogFormat, Value};
use virtio_migrate::inspect::image::{HostFile, IoStats, ReadAt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hives/reader");

/// Every key (by path below the root, `\`-separated, case as stored) and its values.
type Dump = BTreeMap<String, Vec<(String, Value)>>;

fn fixture_bytes(name: &str) -> Vec<u8> {
    let gz = std::fs::File::open(Path::new(FIXTURES).join(format!("{name}.gz"))).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Decompress a fixture into `dir` and return its path.
fn fixture(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, fixture_bytes(name)).unwrap();
    path
}

fn host(path: &Path, stats: &IoStats) -> Arc<dyn ReadAt> {
    Arc::new(HostFile::open(path, stats).unwrap())
}

fn open_path(path: &Path) -> Hive {
    let stats = IoStats::new();
    Hive::open(host(path, &stats), None, None).unwrap()
}

fn open_bytes(bytes: Vec<u8>) -> Result<Hive, HiveError> {
    Hive::open(Arc::new(bytes), None, None)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}\\{name}")
    }
}

/// Walk every key and value with the reader under test.
fn dump_mine(hive: &Hive) -> Dump {
    let mut dump = Dump::new();
    let mut stack = vec![(String::new(), hive.root().unwrap())];
    while let Some((path, key)) = stack.pop() {
        let mut values = hive.values(&key).unwrap();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(values.len() as u32, key.value_count());
        let subkeys = hive.subkeys(&key).unwrap();
        assert_eq!(subkeys.len() as u32, key.subkey_count(), "{path}");
        for sub in subkeys {
            stack.push((join(&path, &sub.name), sub));
        }
        assert!(dump.insert(path, values).is_none());
    }
    dump
}

/// Walk every key and value with notatin (which replays the given new-format logs).
// notatin's builder wants owned ('static) paths, which clippy does not see.
#[allow(clippy::unnecessary_to_owned)]
fn dump_notatin(primary: &Path, logs: &[&Path]) -> Dump {
    use notatin::cell_value::CellValue;
    use notatin::parser_builder::ParserBuilder;
    let mut builder = ParserBuilder::from_path(primary.to_path_buf());
    for log in logs {
        builder.with_transaction_log(log.to_path_buf());
    }
    let mut parser = builder.build().unwrap();
    let root = parser.get_root_key().unwrap().unwrap();
    let mut dump = Dump::new();
    let mut stack = vec![(String::new(), root)];
    while let Some((path, mut key)) = stack.pop() {
        let mut values = Vec::new();
        for value in key.value_iter() {
            let decoded = Value::decode(
                value.data_type as u32,
                value.detail.value_bytes().unwrap_or_default(),
            );
            // notatin's own decoding agrees where both decode.
            let (content, _) = value.get_content();
            match (&decoded, &content) {
                (Value::Sz(a) | Value::ExpandSz(a), CellValue::String(b)) => assert_eq!(a, b),
                (Value::Dword(a), CellValue::U32(b)) => assert_eq!(a, b),
                (Value::Qword(a), CellValue::U64(b)) => assert_eq!(a, b),
                (Value::MultiSz(a), CellValue::MultiString(b)) => assert_eq!(a, b),
                (Value::Binary(a), CellValue::Binary(b)) => assert_eq!(a, b),
                _ => {}
            }
            values.push((value.detail.value_name().to_string(), decoded));
        }
        values.sort_by(|a, b| a.0.cmp(&b.0));
        for sub in key.read_sub_keys(&mut parser) {
            stack.push((join(&path, &sub.key_name), sub));
        }
        assert!(dump.insert(path, values).is_none());
    }
    dump
}

/// hivex's view, through its Perl binding: names and data hex-encoded.
const HIVEX_DUMP: &str = r#"
use strict; use Win::Hivex;
my $h = Win::Hivex->open($ARGV[0]);
sub hx { my $s = shift; utf8::encode($s) if utf8::is_utf8($s); return unpack("H*", $s); }
sub walk { my ($n, $path) = @_;
  print "K ", hx($path), "\n";
  for my $v ($h->node_values($n)) { my ($t, $d) = $h->value_value($v);
    print "V ", hx($path), " ", hx($h->value_key($v)), " ", $t, " ", unpack("H*", $d), "\n"; }
  for my $c ($h->node_children($n)) { my $name = $h->node_name($c);
    walk($c, $path eq "" ? $name : "$path\\$name"); } }
walk($h->root(), "");
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn dump_hivex(primary: &Path) -> Dump {
    let out = Command::new("perl")
        .args(["-e", HIVEX_DUMP])
        .arg(primary)
        .output()
        .expect("perl with Win::Hivex (libwin-hivex-perl) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dump = Dump::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let text = |hex: &str| String::from_utf8(unhex(hex)).unwrap();
        match fields.as_slice() {
            ["K", path] => {
                dump.insert(text(path), Vec::new());
            }
            ["V", path, name, value_type, data] => {
                let value = Value::decode(value_type.parse().unwrap(), unhex(data));
                dump.get_mut(&text(path)).unwrap().push((text(name), value));
            }
            other => panic!("unexpected hivex dump line {other:?}"),
        }
    }
    for values in dump.values_mut() {
        values.sort_by(|a, b| a.0.cmp(&b.0));
    }
    dump
}

fn hivexget(primary: &Path, key: &str, value: &str) -> String {
    let out = Command::new("hivexget")
        .arg(primary)
        .arg(key)
        .arg(value)
        .output()
        .expect("hivexget (libhivex-bin) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

fn assert_same(mine: &Dump, other: &Dump, who: &str) {
    assert_eq!(mine.len(), other.len(), "number of keys per {who}");
    for (path, values) in mine {
        let theirs = other
            .get(path)
            .unwrap_or_else(|| panic!("key {path:?} missing per {who}"));
        assert_eq!(values.len(), theirs.len(), "values of {path:?} per {who}");
        for (a, b) in values.iter().zip(theirs) {
            assert_eq!(a, b, "value in {path:?} per {who}");
        }
    }
}

#[test]
fn clean_hive_reads_like_notatin_and_hivex() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path(), "values.hive");
    let hive = open_path(&path);
    assert_eq!(hive.state(), &HiveState::Clean);
    let mine = dump_mine(&hive);
    assert!(mine.len() > 700, "{} keys", mine.len());
    assert_same(&mine, &dump_notatin(&path, &[]), "notatin");
    // hivex (1.3.23) returns only 16344 of the 16345 bytes of the value whose last big-data
    // segment holds a single byte; notatin and this reader return all of them. Check that this
    // is the only difference, then compare everything else.
    let mut hivex = dump_hivex(&path);
    let types = hivex.get_mut("Types").unwrap();
    let short = types
        .iter_mut()
        .find(|(name, _)| name == "binary_16345")
        .unwrap();
    let full = &mine["Types"]
        .iter()
        .find(|(name, _)| name == "binary_16345")
        .unwrap()
        .1;
    match (&short.1, full) {
        (Value::Binary(short_data), Value::Binary(full_data)) => {
            assert_eq!(short_data.as_slice(), &full_data[..16344]);
        }
        other => panic!("{other:?}"),
    }
    short.1 = full.clone();
    assert_same(&mine, &hivex, "hivex");

    // Spot checks with hivexget's own formatting.
    let viostor = hive
        .key("ControlSet001\\Services\\viostor")
        .unwrap()
        .unwrap();
    assert_eq!(
        hive.value(&viostor, "Group").unwrap().unwrap().as_str(),
        Some(hivexget(&path, "\\ControlSet001\\Services\\viostor", "Group").as_str())
    );
    let sub = hive.key("Many\\Sub0650").unwrap().unwrap();
    assert_eq!(
        hive.value(&sub, "index")
            .unwrap()
            .unwrap()
            .as_u64()
            .unwrap()
            .to_string(),
        hivexget(&path, "\\Many\\Sub0650", "index")
    );
    let cyrillic = hive.key("Names\\Ключ").unwrap().unwrap();
    assert_eq!(
        hive.value(&cyrillic, "v").unwrap().unwrap().as_str(),
        Some(hivexget(&path, "\\Names\\Ключ", "v").as_str())
    );
}

#[test]
fn lookups_are_case_insensitive_and_typed() {
    let hive = open_bytes(fixture_bytes("values.hive")).unwrap();
    let viostor = hive
        .key("controlset001\\SERVICES\\VioStor")
        .unwrap()
        .unwrap();
    assert_eq!(viostor.name, "viostor");
    assert_eq!(
        hive.value(&viostor, "START").unwrap(),
        Some(Value::Dword(0))
    );
    assert_eq!(
        hive.value(&viostor, "imagepath").unwrap(),
        Some(Value::ExpandSz("system32\\drivers\\viostor.sys".into()))
    );
    assert_eq!(
        hive.value(&viostor, "DependOnService").unwrap(),
        Some(Value::MultiSz(vec!["one".into(), "two".into()]))
    );
    assert!(hive
        .key("ControlSet001\\Services\\nothere")
        .unwrap()
        .is_none());
    assert!(hive.value(&viostor, "nothere").unwrap().is_none());
    assert_eq!(hive.key("").unwrap().unwrap().name, "ROOT");
    assert_eq!(hive.key("\\Select\\").unwrap().unwrap().name, "Select");

    let types = hive.key("TYPES").unwrap().unwrap();
    let get = |name: &str| hive.value(&types, name).unwrap().unwrap();
    assert_eq!(get(""), Value::Sz("the default value".into()));
    assert_eq!(get("SZ_EMPTY"), Value::Sz(String::new()));
    assert_eq!(get("sz_unterminated"), Value::Sz("no terminator".into()));
    assert_eq!(get("sz_odd"), Value::Sz("odd".into()));
    assert_eq!(get("expand").as_str(), Some("%SystemRoot%\\system32"));
    assert_eq!(
        get("multi"),
        Value::MultiSz(vec!["alpha".into(), "beta".into(), "Γάμμα".into()])
    );
    assert_eq!(get("multi_empty"), Value::MultiSz(vec![]));
    assert_eq!(get("dword"), Value::Dword(0xDEADBEEF));
    assert_eq!(get("qword").as_u64(), Some(0x0123456789ABCDEF));
    assert_eq!(get("binary_small"), Value::Binary(vec![1, 2, 3]));
    assert_eq!(get("binary_four"), Value::Binary(vec![1, 2, 3, 4]));
    assert_eq!(get("binary_empty"), Value::Binary(vec![]));
    // Big data (db) records, and the sizes around the 16344-byte segment.
    let big: Vec<u8> = (0..40000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect();
    assert_eq!(get("binary_big"), Value::Binary(big));
    let edge: Vec<u8> = (0..16344u32).map(|i| ((i * 13) % 256) as u8).collect();
    assert_eq!(get("binary_16344"), Value::Binary(edge));
    let over: Vec<u8> = (0..16345u32).map(|i| ((i * 5) % 256) as u8).collect();
    assert_eq!(get("binary_16345"), Value::Binary(over));
    assert_eq!(
        get("sz_big").as_str(),
        Some("large string ".repeat(1500).as_str())
    );
    assert_eq!(
        get("dword_short"),
        Value::Other {
            value_type: 4,
            data: vec![0x2a, 0]
        }
    );
    assert_eq!(get("grüsse").as_str(), Some("latin-1 value name"));
    assert_eq!(get("значение").as_str(), Some("utf-16 value name"));
    assert_eq!(get(&"longvaluename".repeat(60)).as_str(), Some("long name"));
    assert_eq!(get("mixedcase").to_string(), "REG_DWORD 0x5 (5)");
    let long_key = format!("k{}ABCD", "0123456789".repeat(25));
    assert_eq!(
        hive.key(&format!("types\\{long_key}"))
            .unwrap()
            .unwrap()
            .name
            .len(),
        255
    );

    // UTF-16 and Latin-1 key names behind an lf list.
    for (path, want) in [
        ("Names\\КЛЮЧ", "cyrillic key"),
        ("Names\\日本語", "cjk key"),
        ("Names\\GRÜSSE", "latin-1 key"),
    ] {
        let key = hive.key(path).unwrap().unwrap();
        assert_eq!(hive.value(&key, "V").unwrap().unwrap().as_str(), Some(want));
    }

    // 700 subkeys behind an index root over lh, lf and li leaves: every one is found.
    let many = hive.key("Many").unwrap().unwrap();
    assert_eq!(hive.subkeys(&many).unwrap().len(), 700);
    for i in 0..700u64 {
        let key = hive.subkey(&many, &format!("SUB{i:04}")).unwrap().unwrap();
        assert_eq!(
            hive.value(&key, "index").unwrap().unwrap().as_u64(),
            Some(i)
        );
    }
    assert!(hive.subkey(&many, "Sub0700").unwrap().is_none());
}

fn replayed_dump_matches(expected_hive: &str, hive: &Hive) {
    let expected = open_bytes(fixture_bytes(expected_hive)).unwrap();
    assert_eq!(expected.state(), &HiveState::Clean);
    assert_same(&dump_mine(hive), &dump_mine(&expected), expected_hive);
}

#[test]
fn dirty_hive_replays_new_format_logs_in_sequence_order() {
    let dir = tempfile::tempdir().unwrap();
    let primary = fixture(dir.path(), "dirty-new.hive");
    let log1 = fixture(dir.path(), "dirty-new.hive.LOG1");
    let log2 = fixture(dir.path(), "dirty-new.hive.LOG2");
    let stats = IoStats::new();
    let hive = Hive::open(
        host(&primary, &stats),
        Some(host(&log1, &stats)),
        Some(host(&log2, &stats)),
    )
    .unwrap();
    // LOG2 carries the earlier entry, so it is applied first.
    assert_eq!(
        hive.state(),
        &HiveState::Replayed {
            log: "LOG2+LOG1".into(),
            entries: 2,
            format: LogFormat::New
        }
    );
    let viostor = hive
        .key("ControlSet001\\Services\\viostor")
        .unwrap()
        .unwrap();
    assert_eq!(
        hive.value(&viostor, "Group").unwrap().unwrap().as_str(),
        Some("Boot Bus Extender")
    );
    assert!(hive
        .key("ControlSet001\\Services\\netkvm")
        .unwrap()
        .is_some());
    let types = hive.key("Types").unwrap().unwrap();
    assert_eq!(
        hive.value(&types, "dword").unwrap(),
        Some(Value::Dword(0x11))
    );
    replayed_dump_matches("changed2.hive", &hive);

    // notatin replays the same logs to the same content; hivex reads the expected hive alike.
    let mine = dump_mine(&hive);
    assert_same(
        &mine,
        &dump_notatin(&primary, &[&log1, &log2]),
        "notatin with logs",
    );
    let expected = fixture(dir.path(), "changed2.hive");
    assert_same(&mine, &dump_hivex(&expected), "hivex on the expected hive");
    // hivex ignores the logs and reads the stale primary.
    assert_eq!(
        hivexget(&primary, "\\ControlSet001\\Services\\viostor", "Group"),
        "SCSI miniport"
    );
}

#[test]
fn dirty_hive_without_usable_logs_reads_the_primary() {
    let primary = fixture_bytes("dirty-new.hive");
    let log1 = fixture_bytes("dirty-new.hive.LOG1");
    let log2 = fixture_bytes("dirty-new.hive.LOG2");
    let arc = |b: &Vec<u8>| -> Arc<dyn ReadAt> { Arc::new(b.clone()) };

    let hive = Hive::open(arc(&primary), None, None).unwrap();
    let HiveState::DirtyNotReplayed { reason } = hive.state() else {
        panic!("{:?}", hive.state())
    };
    assert!(
        reason.contains("LOG1 missing") && reason.contains("LOG2 missing"),
        "{reason}"
    );
    replayed_dump_matches("values.hive", &hive);

    // A damaged later entry (LOG1): only the earlier one applies.
    let mut bad1 = log1.clone();
    let last = bad1.len() - 1;
    bad1[last] ^= 0xFF;
    let hive = Hive::open(arc(&primary), Some(arc(&bad1)), Some(arc(&log2))).unwrap();
    assert_eq!(
        hive.state(),
        &HiveState::Replayed {
            log: "LOG2".into(),
            entries: 1,
            format: LogFormat::New
        }
    );
    replayed_dump_matches("changed1.hive", &hive);

    // A log whose base block checksum is wrong is not used; neither is one whose sequence
    // numbers differ, nor one whose entry hash is bad.
    let mut bad_checksum = log2.clone();
    bad_checksum[508] ^= 1;
    let mut bad_sequence = log2.clone();
    bad_sequence[4] ^= 1;
    let mut bad_hash = log2.clone();
    bad_hash[512 + 24] ^= 1;
    for (broken, why) in [
        (&bad_checksum, "checksum"),
        (&bad_sequence, "checksum"),
        (&bad_hash, "no valid log entry"),
    ] {
        let hive = Hive::open(arc(&primary), None, Some(arc(broken))).unwrap();
        let HiveState::DirtyNotReplayed { reason } = hive.state() else {
            panic!("{why}: {:?}", hive.state())
        };
        assert!(reason.contains(why), "{reason}");
        replayed_dump_matches("values.hive", &hive);
    }
    // LOG1 alone starts one entry after the primary's sequence: the spec lets it apply.
    let hive = Hive::open(arc(&primary), Some(arc(&log1)), None).unwrap();
    assert!(matches!(
        hive.state(),
        HiveState::Replayed { entries: 1, .. }
    ));
}

#[test]
fn dirty_hive_replays_old_format_log() {
    let primary = fixture_bytes("dirty-old.hive");
    let log = fixture_bytes("dirty-old.hive.LOG1");
    let hive = Hive::open(Arc::new(primary.clone()), Some(Arc::new(log.clone())), None).unwrap();
    let HiveState::Replayed {
        log: which,
        entries,
        format,
    } = hive.state()
    else {
        panic!("{:?}", hive.state())
    };
    assert_eq!((which.as_str(), *format), ("LOG1", LogFormat::Old));
    assert!(*entries > 0);
    replayed_dump_matches("changed1.hive", &hive);
    let vioscsi = hive
        .key("ControlSet001\\Services\\vioscsi")
        .unwrap()
        .unwrap();
    assert_eq!(
        hive.value(&vioscsi, "Start").unwrap(),
        Some(Value::Dword(0))
    );

    // A log written for another state of the hive (different timestamp) does not apply.
    let mut other = log.clone();
    other[12] ^= 1;
    fix_checksum(&mut other);
    let hive = Hive::open(Arc::new(primary), Some(Arc::new(other)), None).unwrap();
    let HiveState::DirtyNotReplayed { reason } = hive.state() else {
        panic!("{:?}", hive.state())
    };
    assert!(reason.contains("timestamp"), "{reason}");
    replayed_dump_matches("values.hive", &hive);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn fix_checksum(b: &mut [u8]) {
    let sum = b[..508].chunks_exact(4).fold(0u32, |a, w| {
        a ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]])
    });
    put_u32(b, 508, sum);
}

#[test]
fn corrupted_hives_give_errors_not_panics() {
    let good = fixture_bytes("values.hive");

    // Wrong checksum, no logs: dirty, not replayed, still readable.
    let mut bad = good.clone();
    bad[100] ^= 1;
    let hive = open_bytes(bad).unwrap();
    assert!(
        matches!(hive.state(), HiveState::DirtyNotReplayed { reason } if reason.contains("checksum"))
    );
    assert!(hive.key("Types").unwrap().is_some());

    // Bad signature, truncated hive bins.
    let mut bad = good.clone();
    bad[0] = b'x';
    assert!(matches!(open_bytes(bad), Err(HiveError::BaseBlock { .. })));
    let truncated = good[..good.len() - 8192].to_vec();
    let err = open_bytes(truncated).err().unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(open_bytes(good[..1000].to_vec()).is_err());

    // The root's subkey list offset out of range.
    let root = u32_at(&good, 36) as usize;
    let mut bad = good.clone();
    put_u32(&mut bad, 4096 + root + 4 + 28, 0x7FFF_FFF8);
    fix_checksum(&mut bad);
    let err = open_bytes(bad).unwrap().key("Types").err().unwrap();
    assert!(matches!(err, HiveError::Cell { .. }), "{err}");

    // An index root whose first element points back at itself.
    let hive = open_bytes(good.clone()).unwrap();
    let many = hive.key("Many").unwrap().unwrap().offset() as usize;
    let ri = u32_at(&good, 4096 + many + 4 + 28) as usize;
    assert_eq!(&good[4096 + ri + 4..4096 + ri + 6], b"ri");
    let mut bad = good.clone();
    put_u32(&mut bad, 4096 + ri + 4 + 4, ri as u32);
    let hive = open_bytes(bad).unwrap();
    let many = hive.key("Many").unwrap().unwrap();
    assert!(matches!(hive.subkeys(&many), Err(HiveError::Cycle { .. })));
    assert!(matches!(
        hive.subkey(&many, "Sub0699"),
        Err(HiveError::Cycle { .. })
    ));

    // Absurd value sizes: huge, inline data longer than 4 bytes, larger than its cell.
    let name = b"binary_small";
    let at = good
        .windows(name.len())
        .enumerate()
        .position(|(p, w)| w == name && p >= 20 && &good[p - 20..p - 18] == b"vk")
        .unwrap();
    for size in [0x7FFF_FFF0, 0x8000_0010, 0x0010_0000] {
        let mut bad = good.clone();
        put_u32(&mut bad, at - 16, size);
        let hive = open_bytes(bad).unwrap();
        let types = hive.key("Types").unwrap().unwrap();
        let err = hive.value(&types, "binary_small").err().unwrap();
        assert!(matches!(err, HiveError::Cell { .. }), "{err}");
        assert!(hive.values(&types).is_err());
    }

    // Deterministic byte damage all over the hive bins: every outcome is a value or an error.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..150 {
        let mut bad = good.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = 4096 + (seed as usize % (good.len() - 4096));
            bad[at] = (seed >> 32) as u8;
        }
        if let Ok(hive) = open_bytes(bad) {
            walk_everything(&hive);
        }
    }
}

/// Read every key and value, ignoring errors (used on damaged hives: it must not panic).
fn walk_everything(hive: &Hive) {
    let Ok(root) = hive.root() else { return };
    let mut stack = vec![(root, 0)];
    let mut visited = 0;
    while let Some((key, depth)) = stack.pop() {
        visited += 1;
        if depth > 64 || visited > 5000 {
            return;
        }
        let _ = hive.values(&key);
        if let Ok(subkeys) = hive.subkeys(&key) {
            stack.extend(subkeys.into_iter().map(|k| (k, depth + 1)));
        }
    }
}

#[test]
fn one_deep_lookup_reads_a_small_fraction_of_a_large_hive() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path(), "large.hive");
    let stats = IoStats::new();
    let file = host(&path, &stats);
    let size = file.size();
    let hive = Hive::open(file, None, None).unwrap();
    let key = hive
        .key("Software\\Vendor37\\Product075\\Settings")
        .unwrap()
        .unwrap();
    assert_eq!(
        hive.value(&key, "Deep").unwrap().unwrap().as_str(),
        Some("deep value")
    );
    let read = stats.total_bytes();
    println!(
        "large hive: {size} bytes; one deep lookup read {read} bytes ({:.2}%) in {} reads",
        read as f64 * 100.0 / size as f64,
        stats.snapshot()[0].reads
    );
    assert!(read * 20 < size, "read {read} of {size} bytes");
}

/// Hive bins of a hive image: (bins offset, size) from walking the hbin headers.
fn hive_bins(hive: &[u8]) -> Vec<(usize, usize)> {
    let bins_size = u32_at(hive, 40) as usize;
    let mut bins = Vec::new();
    let mut pos = 0;
    while pos < bins_size {
        assert_eq!(&hive[4096 + pos..4096 + pos + 4], b"hbin");
        let size = u32_at(hive, 4096 + pos + 8) as usize;
        bins.push((pos, size));
        pos += size;
    }
    bins
}

/// The bins offset of the key value cell named `name` (compressed name), found by scanning.
fn vk_offset(hive: &[u8], name: &[u8]) -> usize {
    hive.windows(name.len())
        .enumerate()
        .position(|(p, w)| w == name && p >= 20 && &hive[p - 20..p - 18] == b"vk")
        .unwrap()
        - 20
        - 4
        - 4096
}

#[test]
fn replayed_hive_missing_a_page_is_an_error_not_zeros() {
    let primary = fixture_bytes("dirty-new.hive");
    let log1 = fixture_bytes("dirty-new.hive.LOG1");
    let log2 = fixture_bytes("dirty-new.hive.LOG2");
    let expected = open_bytes(fixture_bytes("changed2.hive")).unwrap();
    let expected_dump = dump_mine(&expected);
    // Cut the primary inside the last hive bin of the old hive (the one regf_rewrite.py
    // appended: big data segments, index roots), keeping pages the logs do not all supply.
    let bins = hive_bins(&primary);
    let (last_bin, last_size) = *bins.last().unwrap();
    assert!(last_size > 8 * 4096, "{last_size}");
    let cut = 4096 + last_bin + 4096;
    let truncated = primary[..cut].to_vec();
    let arc = |b: &Vec<u8>| -> Arc<dyn ReadAt> { Arc::new(b.clone()) };
    // The logs grow the hive past the old end, so the hive opens and replays.
    let hive = Hive::open(arc(&truncated), Some(arc(&log1)), Some(arc(&log2))).unwrap();
    assert!(matches!(
        hive.state(),
        HiveState::Replayed { entries: 2, .. }
    ));
    // Every value is either exactly what the replayed hive holds, or an error saying the page
    // is missing; at least one read reaches a missing page.
    let mut missing = 0;
    for (path, values) in &expected_dump {
        let key = match hive.key(path) {
            Ok(Some(key)) => key,
            Ok(None) => panic!("{path:?} not found instead of an error"),
            Err(e) => {
                assert_missing_page(&e);
                missing += 1;
                continue;
            }
        };
        for (name, want) in values {
            match hive.value(&key, name) {
                Ok(got) => assert_eq!(got.as_ref(), Some(want), "{path}\\{name}"),
                Err(e) => {
                    assert_missing_page(&e);
                    missing += 1;
                }
            }
        }
    }
    assert!(missing > 0);
    // A page past the old end that the logs do supply (the hive grew) reads normally.
    let grown = hive
        .key("ControlSet001\\Services\\netkvm")
        .unwrap()
        .unwrap();
    assert_eq!(
        hive.values(&grown).unwrap(),
        expected_dump["ControlSet001\\Services\\netkvm"]
    );
}

fn assert_missing_page(e: &HiveError) {
    assert!(
        matches!(e, HiveError::Io { .. }) && e.to_string().contains("truncated hive"),
        "{e}"
    );
}

#[test]
fn cells_must_lie_inside_their_hive_bin() {
    let good = fixture_bytes("values.hive");
    let bins = hive_bins(&good);
    let bin_of = |off: usize| *bins.iter().find(|(s, n)| off >= *s && off < s + n).unwrap();
    let vk = vk_offset(&good, b"binary_small");
    let (bin, bin_size) = bin_of(vk);

    // A cell whose size reaches past the end of its hive bin (but not past the hive bins data).
    let mut bad = good.clone();
    let straddle = (bin + bin_size - vk + 8) as i32;
    bad[4096 + vk..4096 + vk + 4].copy_from_slice(&(-straddle).to_le_bytes());
    let hive = open_bytes(bad).unwrap();
    let types = hive.key("Types").unwrap().unwrap();
    let err = hive.value(&types, "binary_small").err().unwrap();
    assert!(
        matches!(err, HiveError::Cell { offset, .. } if offset == (4096 + vk) as u64)
            && err.to_string().contains("hive bin"),
        "{err}"
    );
    // Other values of the key still read.
    assert_eq!(
        hive.value(&types, "dword").unwrap(),
        Some(Value::Dword(0xDEADBEEF))
    );

    // A damaged header of the bin holding the cell: signature, offset field, size field.
    for (at, bytes, why) in [
        (0, b"hbix".to_vec(), "signature"),
        (4, ((bin + 4096) as u32).to_le_bytes().to_vec(), "offset"),
        (8, 4095u32.to_le_bytes().to_vec(), "size"),
        (8, 0u32.to_le_bytes().to_vec(), "size"),
        (8, 0xFFFF_F000u32.to_le_bytes().to_vec(), "size"),
    ] {
        let mut bad = good.clone();
        let header = 4096 + bin + at;
        bad[header..header + bytes.len()].copy_from_slice(&bytes);
        let hive = open_bytes(bad).unwrap();
        let err = hive
            .key("Types")
            .and_then(|types| hive.value(&types.unwrap(), "binary_small"))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains(&format!("{:#x}", 4096 + bin)) && text.contains(why),
            "{why}: {text}"
        );
    }

    // A cell in a later page of a multi-page bin: found by walking back to the bin header,
    // and an error naming that header when it is damaged.
    let hive = open_bytes(good.clone()).unwrap();
    let mut stack = vec![hive.root().unwrap()];
    let mut deep_cell = None;
    while let Some(key) = stack.pop() {
        let off = key.offset() as usize;
        let (start, _) = bin_of(off);
        if off >= start + 4096 {
            deep_cell = Some((key.clone(), start));
            break;
        }
        stack.extend(hive.subkeys(&key).unwrap());
    }
    {
        let (key, big_bin) =
            deep_cell.expect("a key node in a later page of a multi-page hive bin");
        let mut bad = good.clone();
        bad[4096 + big_bin] = b'x';
        let hive = open_bytes(bad).unwrap();
        let path_err = hive.subkeys(&hive.root().unwrap()).and_then(|_| {
            // Re-read the deep key node through its parent chain: simplest is a full walk.
            let mut stack = vec![hive.root()?];
            while let Some(k) = stack.pop() {
                if k.offset() == key.offset() {
                    return Ok(());
                }
                stack.extend(hive.subkeys(&k)?);
            }
            Ok(())
        });
        let err = path_err.err().unwrap();
        assert!(
            err.to_string().contains(&format!("{:#x}", 4096 + big_bin)),
            "{err}"
        );
    }
}

#[test]
fn bad_primary_checksum_takes_the_base_block_from_the_newest_log() {
    let dir = tempfile::tempdir().unwrap();
    // The primary is hive A (sequence numbers 3 and 2) with a damaged base block: its hive
    // bins size and root cell offset are garbage and the checksum no longer matches.
    let mut primary = fixture_bytes("dirty-new.hive");
    put_u32(&mut primary, 40, 0x7FFF_F000);
    put_u32(&mut primary, 36, 0x0BAD_0BA8);
    let primary_path = dir.path().join("bad-base.hive");
    std::fs::write(&primary_path, &primary).unwrap();
    // dirty-one.hive.LOG1: base block copy 3, entries 3 (A -> B) and 4 (B -> C).
    // dirty-one.hive.LOG2: base block copy 2, one old entry 2 (minimal hive -> A).
    let newest = fixture(dir.path(), "dirty-one.hive.LOG1");
    let older = fixture(dir.path(), "dirty-one.hive.LOG2");
    // The oracle is notatin reading hive C itself: notatin 1.0.1, given these logs, copies the
    // newest log's base block (whose sequence numbers are equal) and then skips every log entry
    // as if the hive were clean, contrary to the specification ("its base block is recovered
    // from a transaction log file. Then subsequent log entries are applied").
    let expected = fixture(dir.path(), "changed2.hive");
    for (log1, log2, label) in [(&newest, &older, "LOG1"), (&older, &newest, "LOG2")] {
        let stats = IoStats::new();
        let hive = Hive::open(
            host(&primary_path, &stats),
            Some(host(log1, &stats)),
            Some(host(log2, &stats)),
        )
        .unwrap();
        assert_eq!(
            hive.state(),
            &HiveState::Replayed {
                log: label.into(),
                entries: 2,
                format: LogFormat::New
            }
        );
        replayed_dump_matches("changed2.hive", &hive);
        assert_same(&dump_mine(&hive), &dump_notatin(&expected, &[]), "notatin");
    }
    // With only the older log, its base block (copy 2) replaces the damaged one and its entry 2
    // is a subsequent entry for it (not below 2): replay gives hive A again.
    let stats = IoStats::new();
    let hive = Hive::open(
        host(&primary_path, &stats),
        Some(host(&older, &stats)),
        None,
    )
    .unwrap();
    assert_eq!(
        hive.state(),
        &HiveState::Replayed {
            log: "LOG1".into(),
            entries: 1,
            format: LogFormat::New
        }
    );
    replayed_dump_matches("values.hive", &hive);
    let values = fixture(dir.path(), "values.hive");
    assert_same(&dump_mine(&hive), &dump_notatin(&values, &[]), "notatin");
}

#[test]
fn old_format_log_with_an_invalid_dirty_hive_bin_is_not_used() {
    let primary = fixture_bytes("dirty-old.hive");
    let log = fixture_bytes("dirty-old.hive.LOG1");
    // The dirty pages at hive bins offsets 0x1000 (the header of a bin the primary has) and
    // 0x31d000 (a new bin past the primary's end), located by their headers.
    let header_at = |bins_offset: u32| {
        (512..log.len() - 8)
            .step_by(512)
            .find(|&p| &log[p..p + 4] == b"hbin" && u32_at(&log, p + 4) == bins_offset)
            .unwrap()
    };
    let (existing, grown) = (header_at(0x1000), header_at(0x31d000));
    for (at, bytes, why, file_offset) in [
        (
            existing,
            b"xbin".to_vec(),
            "primary file has a hive bin header",
            0x2000,
        ),
        (
            existing + 4,
            0x2000u32.to_le_bytes().to_vec(),
            "offset field",
            0x2000,
        ),
        (
            existing + 8,
            100u32.to_le_bytes().to_vec(),
            "size 100",
            0x2000,
        ),
        (
            grown + 8,
            0x10_0000u32.to_le_bytes().to_vec(),
            "reaches past",
            0x31e000,
        ),
    ] {
        let mut bad = log.clone();
        bad[at..at + bytes.len()].copy_from_slice(&bytes);
        let hive = Hive::open(Arc::new(primary.clone()), Some(Arc::new(bad)), None).unwrap();
        let HiveState::DirtyNotReplayed { reason } = hive.state() else {
            panic!("{why}: {:?}", hive.state())
        };
        assert!(
            reason.contains(why) && reason.contains(&format!("offset {file_offset:#x}")),
            "{reason}"
        );
        // What is read is the primary as it stands.
        replayed_dump_matches("values.hive", &hive);
    }
}

/// `good` with one more hive bin of `size` bytes (zeros after its header) appended to the hive
/// bins data; returns the hive and the new bin's hive bins offset.
fn with_extra_bin(good: &[u8], size: usize) -> (Vec<u8>, usize) {
    let start = u32_at(good, 40) as usize;
    let mut hive = good[..4096 + start].to_vec();
    hive.resize(4096 + start + size, 0);
    hive[4096 + start..4096 + start + 4].copy_from_slice(b"hbin");
    put_u32(&mut hive, 4096 + start + 4, start as u32);
    put_u32(&mut hive, 4096 + start + 8, size as u32);
    put_u32(&mut hive, 40, (start + size) as u32);
    fix_checksum(&mut hive);
    (hive, start)
}

#[test]
fn cell_and_value_count_limits() {
    let good = fixture_bytes("values.hive");
    let hive = open_bytes(good.clone()).unwrap();
    let types = hive.key("Types").unwrap().unwrap().offset() as usize;
    let small = vk_offset(&good, b"binary_small");

    // A 66 MiB data cell (the hive has room for it in a 68 MiB bin): larger than any cell the
    // reader accepts, refused before it is read.
    let (mut bad, bin) = with_extra_bin(&good, 68 << 20);
    let cell = bin + 32;
    put_u32(&mut bad, 4096 + cell, (-(66i32 << 20)) as u32);
    let unterminated = vk_offset(&good, b"sz_unterminated");
    put_u32(&mut bad, 4096 + unterminated + 4 + 8, cell as u32);
    let hive = open_bytes(bad).unwrap();
    let key = hive.key("Types").unwrap().unwrap();
    let err = hive.value(&key, "sz_unterminated").err().unwrap();
    assert!(
        matches!(err, HiveError::Limit { what: "cell size", offset, .. } if offset == 4096 + cell as u64),
        "{err}"
    );

    // A key declaring more values than the limit, with a value list big enough to hold them
    // (every element naming the same value): refused before the values are read.
    let count = (1u32 << 20) + 1;
    let (mut bad, bin) = with_extra_bin(&good, 5 << 20);
    let list = bin + 32;
    let list_size = (4 + 4 * count as usize).div_ceil(8) * 8;
    put_u32(&mut bad, 4096 + list, (-(list_size as i32)) as u32);
    for i in 0..count as usize {
        put_u32(&mut bad, 4096 + list + 4 + 4 * i, small as u32);
    }
    put_u32(&mut bad, 4096 + types + 4 + 36, count);
    put_u32(&mut bad, 4096 + types + 4 + 40, list as u32);
    let hive = open_bytes(bad).unwrap();
    let key = hive.key("Types").unwrap().unwrap();
    for err in [
        hive.values(&key).err().unwrap(),
        hive.value(&key, "nothere").err().unwrap(),
    ] {
        assert!(
            matches!(
                err,
                HiveError::Limit {
                    what: "number of values",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn damaged_hive_bin_headers_give_errors_not_panics() {
    let good = fixture_bytes("values.hive");
    let bins = hive_bins(&good);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..120 {
        let mut bad = good.clone();
        for _ in 0..3 {
            // A byte of a bin header's signature, offset or size field, or of a page start.
            let (start, size) = bins[next() as usize % bins.len()];
            let page = start + (next() as usize % (size / 4096)) * 4096;
            let at = 4096 + page + next() as usize % 12;
            bad[at] = (next() >> 40) as u8;
        }
        if let Ok(hive) = open_bytes(bad) {
            walk_everything(&hive);
        }
    }
}
