//! Shared pieces of every command's human output: when to colour, an aligned table, and writing
//! to stdout so that a closed pipe (`virtio-migrate scan | head`) ends quietly.

use crate::cli::common::ColorChoice;
use std::io::{IsTerminal, Write};

/// The meaning a coloured piece of text carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Needs action (candidates, failures): red.
    Bad,
    /// Worth a look (a weaker finding, a managed domain): yellow.
    Warn,
    /// Fine as it is: green.
    Good,
    /// Background detail: dim.
    Dim,
    /// Headers and names: bold.
    Strong,
}

impl Tone {
    fn sgr(self) -> &'static str {
        match self {
            Tone::Bad => "31",
            Tone::Warn => "33",
            Tone::Good => "32",
            Tone::Dim => "2",
            Tone::Strong => "1",
        }
    }
}

/// Whether output is coloured, decided once per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    enabled: bool,
}

impl Palette {
    /// A palette that never colours.
    pub fn plain() -> Palette {
        Palette { enabled: false }
    }

    /// The palette for stdout under `--color`: `auto` colours only a terminal, and not when
    /// `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn for_stdout(choice: ColorChoice) -> Palette {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Palette {
            enabled: Self::decide(choice, std::io::stdout().is_terminal(), no_color),
        }
    }

    /// The rule itself: `always` and `never` win; `auto` needs a terminal and no `NO_COLOR`.
    pub fn decide(choice: ColorChoice, is_terminal: bool, no_color: bool) -> bool {
        match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && !no_color,
        }
    }

    /// Whether this palette colours.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `text` wrapped in the tone's ANSI colour, or unchanged when colour is off.
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        if self.enabled && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", tone.sgr())
        } else {
            text.to_string()
        }
    }
}

/// One table cell: its text and, optionally, a tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Option<Tone>,
}

impl Cell {
    /// A cell without colour.
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            tone: None,
        }
    }

    /// A cell in `tone`.
    pub fn toned(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone: Some(tone),
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::plain(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::plain(s)
    }
}

/// A left-aligned table: columns as wide as their widest cell, two spaces apart, no trailing
/// spaces. Widths count characters, so colour codes never shift a column.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Table {
        Table {
            header: header.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row; missing cells are blank, extra cells are dropped.
    pub fn push(&mut self, mut row: Vec<Cell>) {
        row.resize(self.header.len(), Cell::plain(""));
        self.rows.push(row);
    }

    /// Number of rows (the header not counted).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row after the header, each line ending in `\n`.
    pub fn render(&self, palette: &Palette) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(&cell.text));
            }
        }
        let header: Vec<Cell> = self
            .header
            .iter()
            .map(|h| Cell::toned(h.clone(), Tone::Strong))
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            let last = row.iter().rposition(|c| !c.text.is_empty()).unwrap_or(0);
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate().take(last + 1) {
                if i > 0 {
                    line.push_str("  ");
                }
                match cell.tone {
                    Some(tone) => line.push_str(&palette.paint(&cell.text, tone)),
                    None => line.push_str(&cell.text),
                }
                if i < last {
                    line.push_str(&" ".repeat(w.saturating_sub(width(&cell.text))));
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// `println!` that never panics: when stdout is closed (`| head -1` has exited) the text is
/// dropped; a run that changes a host must not die half-way because nobody reads its output.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics (see [`outln!`]).
#[macro_export]
macro_rules! outp {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = write!(out, $($arg)*).and_then(|()| out.flush());
    }};
}

/// `eprintln!` that never panics: a closed stderr (`2>&1 | head -1`) drops the text.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see [`errln!`]).
#[macro_export]
macro_rules! errp {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// Write `text` to stdout. A reader that went away (broken pipe) is not an error.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Serialize `value` as pretty JSON with a final newline and write it to stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print_stdout(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_rule() {
        assert!(Palette::decide(ColorChoice::Auto, true, false));
        assert!(!Palette::decide(ColorChoice::Auto, true, true));
        assert!(!Palette::decide(ColorChoice::Auto, false, false));
        assert!(Palette::decide(ColorChoice::Always, false, true));
        assert!(!Palette::decide(ColorChoice::Never, true, false));
    }

    #[test]
    fn table_aligns_and_trims() {
        let mut t = Table::new(&["NAME", "STATE", "NOTE"]);
        t.push(vec!["a".into(), "running".into(), "".into()]);
        t.push(vec![
            "longer-name".into(),
            Cell::toned("shut off", Tone::Dim),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.render(&Palette::plain()),
            "NAME         STATE     NOTE\na            running\nlonger-name  shut off\n"
        );
        let coloured = t.render(&Palette { enabled: true });
        assert!(coloured.contains("\x1b[2mshut off\x1b[0m"));
        // Colour codes do not count toward the width.
        assert!(coloured.contains("\x1b[1mNAME\x1b[0m         \x1b[1mSTATE"));
    }

    #[test]
    fn paint_is_identity_without_colour() {
        assert_eq!(Palette::plain().paint("x", Tone::Bad), "x");
        assert_eq!(
            Palette { enabled: true }.paint("x", Tone::Bad),
            "\x1b[31mx\x1b[0m"
        );
    }
}
