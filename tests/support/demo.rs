//! The bundled demo host for the tests: fixtures/hosts/demo.xml.in and fixtures/hosts/demo/*.xml
//! written out with `@FIXTURES@` replaced by the absolute (XML-escaped) path of fixtures/, as
//! fixtures/hosts/make-demo.sh does for people. Written once per test process, into a directory
//! per test crate under cargo's target tmpdir; each file is replaced atomically (a rename), so a
//! concurrent run of the same crate never reads half a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The absolute path of fixtures/.
pub fn fixtures() -> PathBuf {
    Path::new(ROOT).join("fixtures")
}

/// Text as an XML attribute value (between single or double quotes).
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Write the demo host into `dir` (`dir/demo.xml`, `dir/demo/*.xml`) and return its URI.
pub fn write_demo_host(dir: &Path) -> String {
    let hosts = fixtures().join("hosts");
    let fixtures_text = xml_escape(&fixtures().display().to_string());
    let subst = |from: &Path, to: &Path| {
        let template = fs::read_to_string(from).unwrap();
        let tmp = to.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, template.replace("@FIXTURES@", &fixtures_text)).unwrap();
        fs::rename(&tmp, to).unwrap();
    };
    fs::create_dir_all(dir.join("demo")).unwrap();
    subst(&hosts.join("demo.xml.in"), &dir.join("demo.xml"));
    for entry in fs::read_dir(hosts.join("demo")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            subst(&path, &dir.join("demo").join(path.file_name().unwrap()));
        }
    }
    format!("test://{}/demo.xml", dir.display())
}

/// The URI of the demo host written for this test process: test:///ABS/PATH/demo.xml.
pub fn demo_uri() -> &'static str {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("demo-host-{}", env!("CARGO_CRATE_NAME")));
        write_demo_host(&dir)
    })
}
