//! Regression tests for the bounds review of the parsers (issue "guest images are hostile"): each
//! test is a minimal hand-made input for one hole that was closed, and checks the reader now
//! refuses it with an error naming the problem instead of spending memory or time on it.

use std::sync::Arc;

use virtio_migrate::inspect::hive::{Hive, HiveError};

/// A hand-made hive: one hive bin of `bins_size` bytes whose cells are appended in order; the
/// root key node is the first cell.
struct HiveBuilder {
    bins: Vec<u8>,
    bins_size: usize,
}

impl HiveBuilder {
    fn new(bins_size: usize) -> HiveBuilder {
        let mut bins = Vec::new();
        bins.extend_from_slice(b"hbin");
        bins.extend_from_slice(&0u32.to_le_bytes());
        bins.extend_from_slice(&(bins_size as u32).to_le_bytes());
        bins.resize(32, 0);
        HiveBuilder { bins, bins_size }
    }

    /// Append an allocated cell holding `payload`; returns its offset in the hive bins.
    fn cell(&mut self, payload: &[u8]) -> u32 {
        let offset = self.bins.len() as u32;
        let size = (4 + payload.len()).next_multiple_of(8);
        self.bins.extend_from_slice(&(-(size as i32)).to_le_bytes());
        self.bins.extend_from_slice(payload);
        self.bins.resize(offset as usize + size, 0);
        offset
    }

    /// Overwrite bytes of an already appended cell's payload.
    fn set(&mut self, cell: u32, at: usize, bytes: &[u8]) {
        let start = cell as usize + 4 + at;
        self.bins[start..start + bytes.len()].copy_from_slice(bytes);
    }

    /// The hive file: a clean base block (root at offset 0x20) and the bins, padded.
    fn build(mut self) -> Vec<u8> {
        let used = self.bins.len();
        assert!(used + 8 <= self.bins_size, "cells overflow the bin");
        // The rest of the bin is one free cell.
        self.bins
            .extend_from_slice(&((self.bins_size - used) as i32).to_le_bytes());
        self.bins.resize(self.bins_size, 0);
        let mut base = vec![0u8; 4096];
        base[..4].copy_from_slice(b"regf");
        for (at, v) in [
            (4, 1u32),
            (8, 1),
            (20, 1),
            (24, 5),
            (28, 0),
            (32, 1),
            (36, 0x20),
            (40, self.bins_size as u32),
            (44, 1),
        ] {
            base[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        let sum = base[..508].chunks_exact(4).fold(0u32, |acc, w| {
            acc ^ u32::from_le_bytes(w.try_into().unwrap())
        });
        base[508..512].copy_from_slice(&sum.to_le_bytes());
        base.extend_from_slice(&self.bins);
        base
    }
}

/// A key node payload named `name` (compressed name).
fn nk(name: &str, subkeys: (u32, u32), values: (u32, u32)) -> Vec<u8> {
    let mut p = vec![0u8; 76];
    p[..2].copy_from_slice(b"nk");
    p[2..4].copy_from_slice(&0x20u16.to_le_bytes());
    p[20..24].copy_from_slice(&subkeys.0.to_le_bytes());
    p[28..32].copy_from_slice(&subkeys.1.to_le_bytes());
    p[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    p[36..40].copy_from_slice(&values.0.to_le_bytes());
    p[40..44].copy_from_slice(&values.1.to_le_bytes());
    p[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
    p[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
    p[72..74].copy_from_slice(&(name.len() as u16).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

/// A key value payload: REG_BINARY data of `len` bytes in the cell at `data`.
fn vk(name: &str, len: u32, data: u32) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[..2].copy_from_slice(b"vk");
    p[2..4].copy_from_slice(&(name.len() as u16).to_le_bytes());
    p[4..8].copy_from_slice(&len.to_le_bytes());
    p[8..12].copy_from_slice(&data.to_le_bytes());
    p[12..16].copy_from_slice(&3u32.to_le_bytes());
    p[16..18].copy_from_slice(&1u16.to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p
}

fn open(bytes: Vec<u8>) -> Hive {
    Hive::open(Arc::new(bytes), None, None).unwrap()
}

/// A subkey list naming one key node twice: listing it used to return the node as many times as
/// listed (up to a million times a 64 KiB name from an 8 MiB hive).
#[test]
fn subkey_list_naming_a_node_twice_is_refused() {
    let mut b = HiveBuilder::new(4096);
    let root = b.cell(&nk("ROOT", (2, 0), (0, u32::MAX)));
    let child = b.cell(&nk(&"X".repeat(200), (0, u32::MAX), (0, u32::MAX)));
    let mut lf = b"li".to_vec();
    lf.extend_from_slice(&2u16.to_le_bytes());
    lf.extend_from_slice(&child.to_le_bytes());
    lf.extend_from_slice(&child.to_le_bytes());
    let list = b.cell(&lf);
    b.set(root, 28, &list.to_le_bytes());
    let hive = open(b.build());
    let root = hive.root().unwrap();
    let err = hive.subkeys(&root).unwrap_err();
    assert!(matches!(err, HiveError::Cell { .. }), "{err}");
    assert!(err.to_string().contains("twice"), "{err}");
    // The lookup by name still finds the key (it stops at the first match).
    assert!(hive.subkey(&root, &"x".repeat(200)).unwrap().is_some());
}

/// A value list naming one value cell twice.
#[test]
fn value_list_naming_a_value_twice_is_refused() {
    let mut b = HiveBuilder::new(4096);
    let root = b.cell(&nk("ROOT", (0, u32::MAX), (2, 0)));
    let data = b.cell(&[7u8; 100]);
    let value = b.cell(&vk("v", 100, data));
    let mut list = Vec::new();
    list.extend_from_slice(&value.to_le_bytes());
    list.extend_from_slice(&value.to_le_bytes());
    let list = b.cell(&list);
    b.set(root, 40, &list.to_le_bytes());
    let hive = open(b.build());
    let err = hive.values(&hive.root().unwrap()).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

/// Distinct value cells sharing one large data cell: together they claim more data than the hive
/// holds, which used to be read (and held) once per value.
#[test]
fn values_sharing_one_data_cell_are_capped_by_the_hive_size() {
    let mut b = HiveBuilder::new(8192);
    let root = b.cell(&nk("ROOT", (0, u32::MAX), (3, 0)));
    let data = b.cell(&[7u8; 3000]);
    let values: Vec<u32> = (0..3)
        .map(|i| b.cell(&vk(&format!("v{i}"), 3000, data)))
        .collect();
    let list: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let list = b.cell(&list);
    b.set(root, 40, &list.to_le_bytes());
    let hive = open(b.build());
    let err = hive.values(&hive.root().unwrap()).unwrap_err();
    assert!(matches!(err, HiveError::Limit { limit: 8192, .. }), "{err}");
    // Each value alone still reads.
    let root = hive.root().unwrap();
    assert_eq!(
        hive.value(&root, "v2").unwrap().unwrap().to_string(),
        hive.value(&root, "v0").unwrap().unwrap().to_string()
    );
}

/// The builder makes hives the reader accepts: a key with two subkeys and two values lists both.
#[test]
fn hand_made_hive_reads() {
    let mut b = HiveBuilder::new(4096);
    let root = b.cell(&nk("ROOT", (2, 0), (2, 0)));
    let a = b.cell(&nk("a", (0, u32::MAX), (0, u32::MAX)));
    let c = b.cell(&nk("c", (0, u32::MAX), (0, u32::MAX)));
    let mut li = b"li".to_vec();
    li.extend_from_slice(&2u16.to_le_bytes());
    li.extend_from_slice(&a.to_le_bytes());
    li.extend_from_slice(&c.to_le_bytes());
    let list = b.cell(&li);
    let data = b.cell(&[1u8; 40]);
    let v0 = b.cell(&vk("one", 40, data));
    let v1 = b.cell(&vk("two", 40, data));
    let values = b.cell(&[v0.to_le_bytes(), v1.to_le_bytes()].concat());
    b.set(root, 28, &list.to_le_bytes());
    b.set(root, 40, &values.to_le_bytes());
    let hive = open(b.build());
    let root = hive.root().unwrap();
    let names: Vec<String> = hive
        .subkeys(&root)
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(hive.values(&root).unwrap().len(), 2);
}
