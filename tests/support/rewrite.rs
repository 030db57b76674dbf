//! A tiny stand-in for the planner, for lifecycle tests only: IDE disks → virtio (next free
//! `vdX`, drive address removed), emulated NIC models → virtio. Everything else is kept.

use xmltree::{Element, XMLNode};

/// Rewrite a domain XML's IDE disks and e1000/rtl8139 NICs to virtio.
pub fn to_virtio(xml: &str) -> String {
    let mut root = Element::parse(xml.as_bytes()).expect("domain XML parses");
    let devices = root.get_mut_child("devices").expect("<devices>");
    let mut used: Vec<String> = devices
        .children
        .iter()
        .filter_map(XMLNode::as_element)
        .filter(|e| e.name == "disk")
        .filter_map(|d| d.get_child("target"))
        .filter_map(|t| t.attributes.get("dev").cloned())
        .collect();
    for node in devices.children.iter_mut() {
        let Some(el) = node.as_mut_element() else {
            continue;
        };
        if el.name == "disk" && el.attributes.get("device").map(String::as_str) == Some("disk") {
            let Some(target) = el.get_mut_child("target") else {
                continue;
            };
            if target.attributes.get("bus").map(String::as_str) != Some("ide") {
                continue;
            }
            let dev = ('a'..='z')
                .map(|c| format!("vd{c}"))
                .find(|d| !used.contains(d))
                .expect("a free vdX");
            used.push(dev.clone());
            target.attributes.insert("bus".into(), "virtio".into());
            target.attributes.insert("dev".into(), dev);
            el.children.retain(|c| {
                c.as_element().is_none_or(|e| {
                    !(e.name == "address"
                        && e.attributes.get("type").map(String::as_str) == Some("drive"))
                })
            });
        } else if el.name == "interface" {
            match el.get_mut_child("model") {
                Some(m) => {
                    m.attributes.insert("type".into(), "virtio".into());
                }
                None => {
                    let mut m = Element::new("model");
                    m.attributes.insert("type".into(), "virtio".into());
                    el.children.push(XMLNode::Element(m));
                }
            }
        }
    }
    let mut out = Vec::new();
    root.write(&mut out).expect("write XML");
    String::from_utf8(out).expect("UTF-8")
}
