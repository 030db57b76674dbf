//! The XML edits of a conversion, made as byte-range splices on the original text.
//!
//! The domain XML is never re-serialised: each edit replaces an attribute value, inserts an attribute
//! or an element, or removes an element, at byte ranges roxmltree reports for the original document.
//! Everything else — comments, namespaced metadata, attribute order and quoting, unknown elements,
//! whitespace — stays byte for byte, and a diff of old and new shows only the real changes.
//!
//! Elements are named by their position among the `<disk>` (or `<interface>`) children of
//! `<domain><devices>`, in document order, the way [`crate::domain`] numbers them.

use std::ops::Range;

use roxmltree::{Document, Node};

use crate::domain::boot_order::DeviceRef;

/// What went wrong while applying edits (a planner bug or a document that changed under it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    /// The text is not well-formed XML.
    #[error("domain XML does not parse: {0}")]
    Parse(String),
    /// The document has no `<domain><devices>`.
    #[error("domain XML has no <devices> element")]
    NoDevices,
    /// An edit names a disk that does not exist.
    #[error("no <disk> number {0} under <devices>")]
    NoSuchDisk(usize),
    /// An edit names an interface that does not exist.
    #[error("no <interface> number {0} under <devices>")]
    NoSuchInterface(usize),
    /// An edit names a device that does not exist.
    #[error("no <{0}> number {1} under <devices>")]
    NoSuchDevice(String, usize),
    /// A disk has no `<target>` element to rename.
    #[error("<disk> number {0} has no <target> element")]
    NoTarget(usize),
    /// Two edits touch the same bytes.
    #[error("two edits overlap at bytes {0}..{1}")]
    Overlap(usize, usize),
}

/// A drive address (`<address type='drive' controller= bus= target= unit=/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DriveAddress {
    /// The controller index.
    pub controller: u32,
    /// The bus on the controller (always 0 for SCSI).
    pub bus: u32,
    /// The SCSI target.
    pub target: u32,
    /// The unit (LUN).
    pub unit: u32,
}

/// What happens to a moved disk's `<address>` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressEdit {
    /// Remove it: libvirt assigns a fresh one (a PCI slot for virtio-blk).
    Remove,
    /// Replace it (or add it) with this drive address.
    Drive(DriveAddress),
}

/// One edit of the domain XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Move disk number `disk` to `bus` with target name `dev`, and deal with its address.
    DiskBus {
        /// Position among `<devices><disk>` in document order.
        disk: usize,
        /// The new bus (`virtio`, `scsi`).
        bus: String,
        /// The new target name.
        dev: String,
        /// What happens to its `<address>`.
        address: AddressEdit,
    },
    /// Add `<controller type='scsi' index=… model=…/>` to `<devices>`.
    AddScsiController {
        /// The controller index.
        index: u32,
        /// The model (`virtio-scsi`).
        model: String,
    },
    /// Set the model of interface number `nic` (adding `<model>` when it is missing).
    NicModel {
        /// Position among `<devices><interface>` in document order.
        nic: usize,
        /// The new model type (`virtio`).
        model: String,
    },
    /// Give a device its own `<boot order='N'/>` (the value replaced when it has one).
    BootOrder {
        /// The device (`disk`, `interface`, … by position among its kind, in document order).
        device: DeviceRef,
        /// The order (QEMU's `bootindex`).
        order: u32,
    },
    /// Remove every `<os><boot dev>` element: per-device orders replace them (libvirt refuses
    /// the two forms together). `<bootmenu>` and the rest of `<os>` stay.
    RemoveOsBoot,
}

/// One splice: replace the bytes in `range` with `text`.
#[derive(Debug, Clone)]
struct Splice {
    range: Range<usize>,
    text: String,
}

/// Apply `edits` to `xml` and return the new text.
pub fn apply(xml: &str, edits: &[Edit]) -> Result<String, RewriteError> {
    let doc = Document::parse(xml).map_err(|e| RewriteError::Parse(e.to_string()))?;
    let devices = devices(&doc).ok_or(RewriteError::NoDevices)?;
    let mut splices = Vec::new();
    for edit in edits {
        match edit {
            Edit::DiskBus {
                disk,
                bus,
                dev,
                address,
            } => {
                let node = children_named(devices, "disk")
                    .nth(*disk)
                    .ok_or(RewriteError::NoSuchDisk(*disk))?;
                disk_bus(xml, node, *disk, bus, dev, *address, &mut splices)?;
            }
            Edit::AddScsiController { index, model } => {
                add_controller(xml, devices, *index, model, &mut splices);
            }
            Edit::NicModel { nic, model } => {
                let node = children_named(devices, "interface")
                    .nth(*nic)
                    .ok_or(RewriteError::NoSuchInterface(*nic))?;
                nic_model(xml, node, model, &mut splices);
            }
            Edit::BootOrder { device, order } => {
                let node = devices
                    .children()
                    .filter(|c| is_libvirt(*c, &device.element))
                    .nth(device.position)
                    .ok_or_else(|| {
                        RewriteError::NoSuchDevice(device.element.clone(), device.position)
                    })?;
                boot_order(xml, node, *order, &mut splices);
            }
            Edit::RemoveOsBoot => {
                for os in children_named(doc.root_element(), "os") {
                    for boot in children_named(os, "boot") {
                        remove_element(boot, &mut splices);
                    }
                }
            }
        }
    }
    splice(xml, splices)
}

/// `<domain><devices>`.
pub fn devices<'a, 'i>(doc: &'a Document<'i>) -> Option<Node<'a, 'i>> {
    let root = doc.root_element();
    if !is_libvirt(root, "domain") {
        return None;
    }
    children_named(root, "devices").next()
}

/// The element children of `node` named `name` in libvirt's (empty) namespace.
pub fn children_named<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| is_libvirt(*c, name))
}

fn is_libvirt(node: Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace().is_none()
}

fn disk_bus(
    xml: &str,
    disk: Node,
    number: usize,
    bus: &str,
    dev: &str,
    address: AddressEdit,
    splices: &mut Vec<Splice>,
) -> Result<(), RewriteError> {
    let target = children_named(disk, "target")
        .next()
        .ok_or(RewriteError::NoTarget(number))?;
    set_attribute(xml, target, "dev", dev, splices);
    set_attribute(xml, target, "bus", bus, splices);
    if bus == "virtio" {
        // QEMU supports a rotation rate on IDE, SATA and SCSI disks only.
        remove_attribute(xml, target, "rotation_rate", splices);
    }
    let old_address = children_named(disk, "address").next();
    match (address, old_address) {
        (AddressEdit::Remove, Some(old)) => remove_element(old, splices),
        (AddressEdit::Remove, None) => {}
        (AddressEdit::Drive(a), Some(old)) => {
            let quote = quote_of(xml, old);
            splices.push(Splice {
                range: old.range(),
                text: drive_address(a, quote),
            });
        }
        (AddressEdit::Drive(a), None) => {
            let quote = quote_of(xml, target);
            insert_child(xml, disk, None, &drive_address(a, quote), splices);
        }
    }
    Ok(())
}

fn drive_address(a: DriveAddress, q: char) -> String {
    format!(
        "<address type={q}drive{q} controller={q}{}{q} bus={q}{}{q} target={q}{}{q} unit={q}{}{q}/>",
        a.controller, a.bus, a.target, a.unit
    )
}

fn add_controller(xml: &str, devices: Node, index: u32, model: &str, splices: &mut Vec<Splice>) {
    // After the last controller, else after the last disk, else at the end of <devices>.
    let anchor = children_named(devices, "controller")
        .last()
        .or_else(|| children_named(devices, "disk").last());
    let quote = anchor.map_or('\'', |a| quote_of(xml, a));
    let element = format!(
        "<controller type={q}scsi{q} index={q}{index}{q} model={q}{}{q}/>",
        escape_attribute(model),
        q = quote
    );
    insert_child(xml, devices, anchor, &element, splices);
}

fn nic_model(xml: &str, interface: Node, model: &str, splices: &mut Vec<Splice>) {
    if let Some(old) = children_named(interface, "model").next() {
        set_attribute(xml, old, "type", model, splices);
        return;
    }
    // libvirt writes <model> before <address>; put it there, else after the last child element.
    let quote = quote_of(xml, interface);
    let element = format!("<model type={q}{}{q}/>", escape_attribute(model), q = quote);
    match children_named(interface, "address").next() {
        Some(address) => insert_before(xml, address, &element, splices),
        None => {
            let last = interface.children().rfind(|c| c.is_element());
            insert_child(xml, interface, last, &element, splices);
        }
    }
}

/// Give `device` the per-device `<boot order='order'/>`: set the value of its `<boot>` when it has
/// one; else a new element — in a disk right after `<target>` (where libvirt writes it when no
/// `<readonly>` or `<serial>` follows; the schema takes a disk's children in any order, and the
/// target's own edits stay inside its tag), elsewhere before `<alias>`/`<address>` (libvirt's
/// place), else as the last child.
fn boot_order(xml: &str, device: Node, order: u32, splices: &mut Vec<Splice>) {
    let value = order.to_string();
    if let Some(existing) = children_named(device, "boot").next() {
        set_attribute(xml, existing, "order", &value, splices);
        return;
    }
    let element = format!("<boot order={q}{value}{q}/>", q = quote_of(xml, device));
    if device.tag_name().name() == "disk" {
        if let Some(target) = children_named(device, "target").next() {
            insert_child(xml, device, Some(target), &element, splices);
            return;
        }
    }
    match device
        .children()
        .find(|c| is_libvirt(*c, "alias") || is_libvirt(*c, "address"))
    {
        Some(anchor) => insert_before(xml, anchor, &element, splices),
        None => {
            let last = device.children().rfind(|c| c.is_element());
            insert_child(xml, device, last, &element, splices);
        }
    }
}

/// Set attribute `name` of `element` to `value`: replace the value in place (keeping its quotes), or
/// add the attribute after the last one.
fn set_attribute(xml: &str, element: Node, name: &str, value: &str, splices: &mut Vec<Splice>) {
    if let Some(attribute) = element
        .attributes()
        .find(|a| a.name() == name && a.namespace().is_none())
    {
        if attribute.value() != value {
            splices.push(Splice {
                range: attribute.range_value(),
                text: escape_attribute(value),
            });
        }
        return;
    }
    let at = element
        .attributes()
        .map(|a| a.range().end)
        .max()
        .unwrap_or_else(|| tag_name_end(xml, element));
    let q = quote_of(xml, element);
    splices.push(Splice {
        range: at..at,
        text: format!(" {name}={q}{}{q}", escape_attribute(value)),
    });
}

/// Remove attribute `name` of `element` (with the whitespace in front of it), if present.
fn remove_attribute(xml: &str, element: Node, name: &str, splices: &mut Vec<Splice>) {
    let Some(attribute) = element
        .attributes()
        .find(|a| a.name() == name && a.namespace().is_none())
    else {
        return;
    };
    let range = attribute.range();
    let before = xml.get(..range.start).unwrap_or("");
    let start = before.trim_end().len();
    splices.push(Splice {
        range: start..range.end,
        text: String::new(),
    });
}

/// The byte just after the element's tag name in its start tag.
fn tag_name_end(xml: &str, element: Node) -> usize {
    let start = element.range().start.saturating_add(1);
    let rest = xml.get(start..).unwrap_or("");
    let len = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    start + len
}

/// The quote character the element's first attribute uses (libvirt writes `'`), default `'`.
fn quote_of(xml: &str, element: Node) -> char {
    element
        .attributes()
        .next()
        .and_then(|a| {
            let end = a.range().end;
            xml.get(end.checked_sub(1)?..end)
        })
        .and_then(|s| s.chars().next())
        .filter(|c| *c == '"' || *c == '\'')
        .unwrap_or('\'')
}

/// Remove an element together with the whitespace-only text in front of it (its line).
fn remove_element(element: Node, splices: &mut Vec<Splice>) {
    let mut start = element.range().start;
    if let Some(prev) = element.prev_sibling() {
        if prev.is_text() && prev.text().is_some_and(|t| t.trim().is_empty()) {
            start = prev.range().start;
        }
    }
    splices.push(Splice {
        range: start..element.range().end,
        text: String::new(),
    });
}

/// The whitespace-only text in front of `node`, if any (its indentation, with the line break).
fn leading_whitespace<'i>(xml: &'i str, node: Node) -> Option<&'i str> {
    let prev = node.prev_sibling()?;
    if !prev.is_text() {
        return None;
    }
    let text = xml.get(prev.range())?;
    if !text.trim().is_empty() {
        return None;
    }
    // Only the part from the last line break on is the node's own indentation.
    Some(text.rfind('\n').and_then(|i| text.get(i..)).unwrap_or(text))
}

/// Insert `element` just before `node`, on a line of its own with `node`'s indentation.
fn insert_before(xml: &str, node: Node, element: &str, splices: &mut Vec<Splice>) {
    let at = node.range().start;
    // "<new/>\n    " followed by the node: the node keeps its own line and indentation.
    let indent = leading_whitespace(xml, node).unwrap_or("");
    let text = format!("{element}{indent}");
    splices.push(Splice {
        range: at..at,
        text,
    });
}

/// Insert `element` as a child of `parent`: after `after` (a child element) when given, else as the
/// last child. Indentation copies that of the sibling (or one level below the parent).
fn insert_child(
    xml: &str,
    parent: Node,
    after: Option<Node>,
    element: &str,
    splices: &mut Vec<Splice>,
) {
    let sibling = after.or_else(|| parent.children().rfind(|c| c.is_element()));
    let indent = sibling
        .and_then(|s| leading_whitespace(xml, s))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let parent_indent = leading_whitespace(xml, parent).unwrap_or("\n");
            format!("{parent_indent}  ")
        });
    match sibling {
        Some(s) => {
            let at = s.range().end;
            splices.push(Splice {
                range: at..at,
                text: format!("{indent}{element}"),
            });
        }
        None => {
            // No child element: put it before the end tag, or expand an empty element.
            let range = parent.range();
            let tail = xml.get(range.clone()).unwrap_or("");
            let parent_indent = leading_whitespace(xml, parent).unwrap_or("\n");
            if tail.ends_with("/>") {
                let at = range.end.saturating_sub(2);
                let name = parent.tag_name().name();
                splices.push(Splice {
                    range: at..range.end,
                    text: format!(">{indent}{element}{parent_indent}</{name}>"),
                });
            } else {
                let at = tail.rfind("</").map_or(range.end, |i| range.start + i);
                // Replace the whitespace before the end tag so the end tag keeps its own line.
                let ws_start = xml
                    .get(..at)
                    .map(|s| s.trim_end().len())
                    .unwrap_or(at)
                    .max(range.start);
                splices.push(Splice {
                    range: ws_start..at,
                    text: format!("{indent}{element}{parent_indent}"),
                });
            }
        }
    }
}

/// Escape a value for an attribute in either quote style.
fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn splice(xml: &str, mut splices: Vec<Splice>) -> Result<String, RewriteError> {
    // Stable sort: insertions at the same byte keep the order the edits asked for.
    splices.sort_by_key(|s| (s.range.start, s.range.end));
    let mut out = String::with_capacity(xml.len() + 256);
    let mut pos = 0usize;
    for s in &splices {
        if s.range.start < pos {
            return Err(RewriteError::Overlap(s.range.start, pos));
        }
        out.push_str(xml.get(pos..s.range.start).unwrap_or(""));
        out.push_str(&s.text);
        pos = s.range.end;
    }
    out.push_str(xml.get(pos..).unwrap_or(""));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIC_NO_MODEL: &str = "<domain>\n  <devices>\n    <interface type=\"user\">\n      <mac address=\"52:54:00:00:00:01\"/>\n    </interface>\n    <interface type='user'/>\n  </devices>\n</domain>\n";

    #[test]
    fn model_is_added_with_the_documents_quotes_and_indentation() {
        let edits = [
            Edit::NicModel {
                nic: 0,
                model: "virtio".into(),
            },
            Edit::NicModel {
                nic: 1,
                model: "virtio".into(),
            },
        ];
        let out = apply(NIC_NO_MODEL, &edits).unwrap();
        assert_eq!(
            out,
            "<domain>\n  <devices>\n    <interface type=\"user\">\n      <mac address=\"52:54:00:00:00:01\"/>\n      <model type=\"virtio\"/>\n    </interface>\n    <interface type='user'>\n      <model type='virtio'/>\n    </interface>\n  </devices>\n</domain>\n"
        );
    }

    #[test]
    fn disk_keeps_everything_but_bus_target_and_address() {
        let xml = "<domain><devices>\n  <disk type='file' device='disk'>\n    <source file='/a'/>\n    <target dev='hda' bus='ide'/>\n    <!-- keep -->\n    <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n  </disk>\n</devices></domain>";
        let edits = [Edit::DiskBus {
            disk: 0,
            bus: "virtio".into(),
            dev: "vda".into(),
            address: AddressEdit::Remove,
        }];
        let out = apply(xml, &edits).unwrap();
        assert_eq!(
            out,
            "<domain><devices>\n  <disk type='file' device='disk'>\n    <source file='/a'/>\n    <target dev='vda' bus='virtio'/>\n    <!-- keep -->\n  </disk>\n</devices></domain>"
        );
    }

    #[test]
    fn boot_order_goes_after_the_target_and_os_boot_goes() {
        let xml = "<domain>\n  <os>\n    <type>hvm</type>\n    <boot dev='cdrom'/>\n    <boot dev='hd'/>\n    <bootmenu enable='yes'/>\n  </os>\n  <devices>\n    <disk type='file' device='disk'>\n      <target dev='hda' bus='ide'/>\n      <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n    </disk>\n    <disk device=\"cdrom\">\n      <target dev=\"hdc\" bus=\"ide\"/>\n      <readonly/>\n    </disk>\n    <interface type='user'>\n      <mac address='52:54:00:00:00:01'/>\n      <address type='pci' slot='0x03'/>\n    </interface>\n  </devices>\n</domain>\n";
        let edits = [
            Edit::DiskBus {
                disk: 0,
                bus: "virtio".into(),
                dev: "vdb".into(),
                address: AddressEdit::Remove,
            },
            Edit::BootOrder {
                device: DeviceRef::disk(1),
                order: 1,
            },
            Edit::BootOrder {
                device: DeviceRef::disk(0),
                order: 2,
            },
            Edit::BootOrder {
                device: DeviceRef::interface(0),
                order: 3,
            },
            Edit::RemoveOsBoot,
        ];
        let out = apply(xml, &edits).unwrap();
        assert_eq!(
            out,
            "<domain>\n  <os>\n    <type>hvm</type>\n    <bootmenu enable='yes'/>\n  </os>\n  <devices>\n    <disk type='file' device='disk'>\n      <target dev='vdb' bus='virtio'/>\n      <boot order='2'/>\n    </disk>\n    <disk device=\"cdrom\">\n      <target dev=\"hdc\" bus=\"ide\"/>\n      <boot order=\"1\"/>\n      <readonly/>\n    </disk>\n    <interface type='user'>\n      <mac address='52:54:00:00:00:01'/>\n      <boot order='3'/>\n      <address type='pci' slot='0x03'/>\n    </interface>\n  </devices>\n</domain>\n"
        );
        // An existing order is renumbered in place; a missing device is an error.
        let with_order =
            "<domain><devices><disk><target dev='vda'/><boot order='4'/></disk></devices></domain>";
        let edit = Edit::BootOrder {
            device: DeviceRef::disk(0),
            order: 1,
        };
        assert_eq!(
            apply(with_order, std::slice::from_ref(&edit)).unwrap(),
            "<domain><devices><disk><target dev='vda'/><boot order='1'/></disk></devices></domain>"
        );
        assert_eq!(
            apply(
                with_order,
                &[Edit::BootOrder {
                    device: DeviceRef::interface(0),
                    order: 1
                }]
            ),
            Err(RewriteError::NoSuchDevice("interface".into(), 0))
        );
    }

    #[test]
    fn missing_bus_attribute_is_added_and_overlaps_are_refused() {
        let xml = "<domain><devices><disk><target dev='hda'/></disk></devices></domain>";
        let edit = Edit::DiskBus {
            disk: 0,
            bus: "virtio".into(),
            dev: "vda".into(),
            address: AddressEdit::Remove,
        };
        let out = apply(xml, std::slice::from_ref(&edit)).unwrap();
        assert_eq!(
            out,
            "<domain><devices><disk><target dev='vda' bus='virtio'/></disk></devices></domain>"
        );
        assert!(matches!(
            apply(xml, &[edit.clone(), edit]),
            Err(RewriteError::Overlap(..))
        ));
        assert_eq!(
            apply("<domain/>", &[]),
            Err(RewriteError::NoDevices),
            "no devices"
        );
    }
}
