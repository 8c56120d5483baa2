//! `dextlink explain`: the dispatch table a schema produces, for people.
//!
//! One row per entry of the C++ `IOUserClientMethodDispatch` table (gaps and
//! reserved selectors included, since the table has zero-filled entries for
//! them), with each method's arguments and the five check values exactly as
//! the table carries them (`Interface::dispatch_checks`, docs/driverkit.md
//! §2.2). Then the reserved selectors, the memory types, and the interface's
//! fingerprint, version and service.
//!
//! [`text`] renders an aligned plain-text table, [`markdown`] a GitHub table.
//! Both are deterministic.

use std::fmt::Write;

use crate::model::*;

/// The explanation as aligned plain text.
pub fn text(iface: &Interface) -> String {
    let rows = rows(iface);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: dispatch table, {} {}",
        iface.name,
        iface.dispatch_len(),
        entries(iface.dispatch_len())
    );
    out.push('\n');
    let header: Vec<Vec<String>> = HEADERS.iter().map(|h| vec![h.to_string()]).collect();
    let mut table: Vec<Vec<Vec<String>>> = vec![header];
    table.extend(rows.iter().map(|r| r.cells()));
    render_table(&mut out, &table);
    out.push('\n');
    for line in LEGEND {
        let _ = writeln!(out, "{line}");
    }

    out.push('\n');
    if iface.reserved.is_empty() {
        out.push_str("Reserved selectors: none\n");
    } else {
        out.push_str("Reserved selectors:\n");
        let width = iface.reserved.iter().map(|r| r.selector.to_string().len()).max().unwrap_or(0);
        for r in &iface.reserved {
            let why = r.docs.join(" ");
            let line = format!("  {:>width$}  {why}", r.selector);
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }

    out.push('\n');
    if iface.memories.is_empty() {
        out.push_str("Memory types: none\n");
    } else {
        out.push_str("Memory types:\n");
        let mut table = vec![
            ["id", "name", "size", "access"]
                .iter()
                .map(|h| vec![h.to_string()])
                .collect::<Vec<_>>(),
        ];
        for m in &iface.memories {
            table.push(vec![
                vec![m.id.to_string()],
                vec![m.name.clone()],
                vec![size_text(m.size)],
                vec![access(m.access).to_string()],
            ]);
        }
        let mut t = String::new();
        render_table(&mut t, &table);
        for line in t.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }

    out.push('\n');
    let _ = writeln!(out, "Fingerprint: {:#018x}", iface.fingerprint);
    let _ = writeln!(out, "Version:     {}", iface.version);
    let _ = writeln!(out, "Service:     {:?}", iface.service);
    let _ = writeln!(
        out,
        "Handshake:   selector {HANDSHAKE_SELECTOR:#010x} returns the fingerprint and the version"
    );
    out
}

/// The explanation as GitHub-flavoured Markdown.
pub fn markdown(iface: &Interface) -> String {
    let rows = rows(iface);
    let mut out = String::new();
    let _ = writeln!(out, "## {}: dispatch table", md(&iface.name));
    out.push('\n');
    let _ = writeln!(out, "{} {}.", iface.dispatch_len(), entries(iface.dispatch_len()));
    out.push('\n');
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let aligns: Vec<&str> = HEADERS
        .iter()
        .enumerate()
        .map(|(i, _)| if i == 0 || i >= 8 { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", aligns.join(" | "));
    for r in &rows {
        let cells: Vec<String> = r
            .cells()
            .iter()
            .map(|c| md(&c.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    let _ = writeln!(out, "{}", LEGEND.join(" "));

    out.push_str("\n### Reserved selectors\n\n");
    if iface.reserved.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| selector | note |\n| ---: | --- |\n");
        for r in &iface.reserved {
            let _ = writeln!(out, "| {} | {} |", r.selector, md(&r.docs.join(" ")));
        }
    }

    out.push_str("\n### Memory types\n\n");
    if iface.memories.is_empty() {
        out.push_str("None.\n");
    } else {
        out.push_str("| id | name | size | access |\n| ---: | --- | ---: | --- |\n");
        for m in &iface.memories {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.id,
                md(&m.name),
                size_text(m.size),
                access(m.access)
            );
        }
    }

    out.push_str("\n### Interface\n\n");
    let _ = writeln!(out, "- fingerprint: `{:#018x}`", iface.fingerprint);
    let _ = writeln!(out, "- version: {}", iface.version);
    let _ = writeln!(out, "- service: `{}`", iface.service.replace('`', "'"));
    let _ = writeln!(
        out,
        "- handshake: selector `{HANDSHAKE_SELECTOR:#010x}` returns the fingerprint and the version"
    );
    out
}

const HEADERS: [&str; 13] = [
    "sel",
    "name",
    "kind",
    "scalars in",
    "struct in",
    "scalars out",
    "struct out",
    "completion",
    "cmpl",
    "#in",
    "in B",
    "#out",
    "out B",
];

const LEGEND: [&str; 3] = [
    "Checks, as in the C++ IOUserClientMethodDispatch table: cmpl = checkCompletionExists (1 required, 0 forbidden, -1U don't care),",
    "#in/#out = checkScalarInput/OutputCount, in B/out B = checkStructureInput/OutputSize; variable = 0xffffffff (not checked).",
    "Unchecked, reserved and unused selectors have zero entries: the dext dispatches them by hand or rejects them.",
];

fn entries(n: u32) -> &'static str {
    if n == 1 { "entry" } else { "entries" }
}

fn access(a: Access) -> &'static str {
    match a {
        Access::ReadOnly => "read-only",
        Access::ReadWrite => "read-write",
    }
}

/// `4096 B (4 KiB)`.
fn size_text(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{n} B ({} {name})", n / unit);
        }
    }
    format!("{n} B")
}

/// Markdown cell text: pipes escaped, no line breaks.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One row of the dispatch table; each cell may span several lines.
struct Row {
    /// A selector, or a range of unused ones.
    selector: String,
    name: String,
    kind: String,
    scalars_in: Vec<String>,
    struct_in: Vec<String>,
    scalars_out: Vec<String>,
    struct_out: Vec<String>,
    completion: Vec<String>,
    checks: DispatchChecks,
}

impl Row {
    fn cells(&self) -> Vec<Vec<String>> {
        let one = |s: String| vec![s];
        let count = |v: u32| if v == VARIABLE { "variable".to_string() } else { v.to_string() };
        let c = self.checks;
        vec![
            one(self.selector.clone()),
            one(self.name.clone()),
            one(self.kind.clone()),
            self.scalars_in.clone(),
            self.struct_in.clone(),
            self.scalars_out.clone(),
            self.struct_out.clone(),
            self.completion.clone(),
            one(if c.completion_exists == VARIABLE {
                "-1U".to_string()
            } else {
                c.completion_exists.to_string()
            }),
            one(count(c.scalar_input_count)),
            one(count(c.structure_input_size)),
            one(count(c.scalar_output_count)),
            one(count(c.structure_output_size)),
        ]
    }
}

fn dash() -> Vec<String> {
    vec!["-".to_string()]
}

/// One row per dispatch-table entry; a run of unused selectors (neither a
/// method nor reserved) shares one row, e.g. `3..=9`.
fn rows(iface: &Interface) -> Vec<Row> {
    let empty = |selector: String, name: &str| Row {
        selector,
        name: name.to_string(),
        kind: "-".to_string(),
        scalars_in: dash(),
        struct_in: dash(),
        scalars_out: dash(),
        struct_out: dash(),
        completion: dash(),
        checks: DispatchChecks::ZERO,
    };
    let mut rows = Vec::new();
    let mut sel = 0;
    while sel < iface.dispatch_len() {
        if let Some(m) = iface.method(sel) {
            rows.push(method_row(iface, m));
            sel += 1;
        } else if iface.reserved.iter().any(|r| r.selector == sel) {
            rows.push(empty(sel.to_string(), "(reserved)"));
            sel += 1;
        } else {
            let start = sel;
            while sel + 1 < iface.dispatch_len()
                && iface.method(sel + 1).is_none()
                && !iface.reserved.iter().any(|r| r.selector == sel + 1)
            {
                sel += 1;
            }
            let label = if start == sel { sel.to_string() } else { format!("{start}..={sel}") };
            rows.push(empty(label, "(unused)"));
            sel += 1;
        }
    }
    rows
}

fn method_row(iface: &Interface, m: &Method) -> Row {
    let mut kind = vec![if m.is_async { "async" } else { "sync" }];
    if m.unchecked {
        kind.push("unchecked");
    }
    if m.completion_check == CompletionCheck::Any {
        kind.push("any-completion");
    }
    Row {
        selector: m.selector.to_string(),
        name: m.name.clone(),
        kind: kind.join(", "),
        scalars_in: scalars(iface, &m.scalar_inputs),
        struct_in: struct_arg(iface, m.struct_input.as_ref(), true),
        scalars_out: scalars(iface, &m.scalar_outputs),
        struct_out: struct_arg(iface, m.struct_output.as_ref(), false),
        completion: if !m.is_async {
            dash()
        } else if m.completion.is_empty() {
            vec!["status only".to_string()]
        } else {
            scalars(iface, &m.completion)
        },
        checks: iface.dispatch_checks(m),
    }
}

/// `2: slot u32 0..=7` / `   len u32 1..=1048576`: the count, then one
/// scalar per line, aligned under the first.
fn scalars(iface: &Interface, list: &[Scalar]) -> Vec<String> {
    if list.is_empty() {
        return dash();
    }
    let prefix = format!("{}: ", list.len());
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let ty = match s.ty {
                ScalarType::Int(t) => t.rust().to_string(),
                ScalarType::Bool => "bool".to_string(),
                ScalarType::Enum(e) => iface.enums[e].name.clone(),
            };
            let range = s.range.map(|(lo, hi)| format!(" {lo}..={hi}")).unwrap_or_default();
            let lead = if i == 0 { prefix.clone() } else { " ".repeat(prefix.len()) };
            let sep = if i + 1 < list.len() { "," } else { "" };
            format!("{lead}{} {ty}{range}{sep}", s.name)
        })
        .collect()
}

/// `ImageInfo (24 B)`, `bytes 1..=65536` + `(variable; >4096 B out of line)`.
fn struct_arg(iface: &Interface, arg: Option<&StructArg>, input: bool) -> Vec<String> {
    let Some(arg) = arg else { return dash() };
    let ool = |n: u64| n > INBAND_STRUCT_MAX;
    match arg.shape {
        StructShape::Struct(i) => {
            let s = &iface.structs[i];
            let mut v = vec![format!("{} ({} B)", s.name, s.size)];
            if ool(s.size) {
                v.push("(out of line)".to_string());
            }
            v
        }
        StructShape::Bytes(n) => {
            let mut v = vec![format!("bytes ({n} B)")];
            if ool(n) {
                v.push("(out of line)".to_string());
            }
            v
        }
        StructShape::Bounded { min, max } => vec![
            format!("bytes {min}..={max}"),
            if ool(max) {
                "(variable; >4096 B out of line)".to_string()
            } else {
                "(variable)".to_string()
            },
        ],
        StructShape::Variable => {
            debug_assert!(!input, "variable shapes are outputs only");
            vec!["bytes (any length)".to_string(), "(var-output call, out of line)".to_string()]
        }
    }
}

/// An aligned table: two spaces between columns, a dashed rule under the
/// first row, multi-line cells, no trailing spaces.
fn render_table(out: &mut String, table: &[Vec<Vec<String>>]) {
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table.iter().flat_map(|row| row[c].iter()).map(|l| l.chars().count()).max().unwrap_or(0)
        })
        .collect();
    let mut emit_line = |cells: Vec<&str>| {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    for (r, row) in table.iter().enumerate() {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for l in 0..height {
            emit_line(row.iter().map(|cell| cell.get(l).map_or("", String::as_str)).collect());
        }
        if r == 0 {
            let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            emit_line(rules.iter().map(String::as_str).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Interface {
        crate::parse_str("t.dextlink", src).unwrap_or_else(|d| panic!("{d}")).interface
    }

    fn null_driver() -> Interface {
        load(include_str!("../../../examples/null_driver/null_driver.dextlink"))
    }

    fn fwloader() -> Interface {
        load(include_str!("../../../examples/fwloader/fwloader.dextlink"))
    }

    fn shapes() -> Interface {
        load(include_str!("../../../tests/schemas/shapes.dextlink"))
    }

    /// The cells of the text row for `name`, split on runs of 2+ spaces.
    fn text_row<'a>(t: &'a str, sel: &str, name: &str) -> Vec<&'a str> {
        let line = t
            .lines()
            .find(|l| l.starts_with(&format!("{sel} ")) && l.contains(&format!("  {name}  ")))
            .unwrap_or_else(|| panic!("no row {sel} {name} in\n{t}"));
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()
    }

    #[test]
    fn fwloader_text() {
        let t = text(&fwloader());
        assert!(t.starts_with("FwLoader: dispatch table, 6 entries\n"));
        let submit = text_row(&t, "1", "submit");
        assert_eq!(
            submit,
            [
                "1",
                "submit",
                "async",
                "2: slot u32 0..=7,",
                "-",
                "-",
                "-",
                "2: transferred u32,",
                "1",
                "2",
                "0",
                "0",
                "0"
            ]
        );
        assert!(t.contains("len u32 1..=1048576"));
        assert!(t.contains("acknowledged u64"));
        let begin = text_row(&t, "0", "begin");
        assert_eq!(
            begin,
            [
                "0",
                "begin",
                "sync",
                "-",
                "ImageInfo (24 B)",
                "2: session u64,",
                "-",
                "-",
                "0",
                "0",
                "24",
                "2",
                "0"
            ]
        );
        let status = text_row(&t, "3", "status");
        assert_eq!(status[6], "UploadState (48 B)");
        assert!(t.contains("Reserved selectors: none"));
        assert!(t.contains("0   staging  8388608 B (8 MiB)  read-write"), "{t}");
        assert!(t.contains(&format!("Fingerprint: {:#018x}", fwloader().fingerprint)));
        assert!(t.contains("Version:     1\n"));
        assert!(t.contains("Service:     \"FwLoaderDriver\""));
        // Continuation lines of a multi-line cell line up under its first line.
        let first = t.lines().find(|l| l.contains("2: slot u32")).unwrap();
        let next = t.lines().find(|l| l.contains("len u32 1..=1048576")).unwrap();
        assert_eq!(first.find("slot"), next.find("len"));
        assert!(t.lines().all(|l| l == l.trim_end()));
        assert_eq!(t, text(&fwloader()));
    }

    #[test]
    fn null_driver_checks_match_the_sample() {
        let t = text(&null_driver());
        // Apple's externalMethodChecks: unchecked selectors zero-filled, -1U
        // for the optional completion.
        assert_eq!(text_row(&t, "0", "scalar")[2..4], ["sync, unchecked", "2: a u64,"]);
        assert_eq!(text_row(&t, "0", "scalar")[8..], ["0", "0", "0", "0", "0"]);
        assert_eq!(text_row(&t, "2", "checked_scalar")[8..], ["0", "16", "0", "16", "0"]);
        assert_eq!(text_row(&t, "3", "checked_struct")[8..], ["0", "0", "16", "0", "16"]);
        assert_eq!(text_row(&t, "4", "register_async_callback")[8..], ["1", "0", "16", "0", "16"]);
        let r5 = text_row(&t, "5", "async_request");
        assert_eq!(r5[2], "async, any-completion");
        assert_eq!(r5[7], "status only");
        assert_eq!(r5[8..], ["-1U", "0", "16", "0", "0"]);
        assert!(t.contains("Memory types: none"));
    }

    #[test]
    fn shapes_text_and_markdown() {
        let iface = shapes();
        let t = text(&iface);
        let blob = text_row(&t, "6", "write_blob");
        assert_eq!(blob[4], "bytes 1..=65536");
        assert_eq!(blob[8..], ["0", "0", "variable", "1", "0"]);
        assert!(t.contains("(variable; >4096 B out of line)"));
        assert_eq!(text_row(&t, "8", "read_log")[8..], ["0", "1", "0", "0", "variable"]);
        assert_eq!(text_row(&t, "7", "read_name")[8..], ["0", "0", "0", "0", "32"]);
        assert_eq!(
            text_row(&t, "14", "(reserved)")[2..],
            ["-", "-", "-", "-", "-", "-", "0", "0", "0", "0", "0"]
        );
        assert!(t.contains("Big (4800 B)"));
        assert!(t.contains("b i32 -40..=125,"));
        assert!(t.contains("  14  Retired: took a `u32` that no longer means anything."));
        assert!(t.contains("1   counters  4096 B (4 KiB)    read-only"), "{t}");

        let m = markdown(&iface);
        assert!(m.starts_with("## Shapes: dispatch table\n\n17 entries.\n\n| sel | name | kind |"));
        assert!(m.contains(
            "| 6 | write_blob | sync | - | bytes 1..=65536 (variable; >4096 B out of line) | 1: written u32 | - | - | 0 | 0 | variable | 1 | 0 |"
        ), "{m}");
        assert!(m.contains(
            "| 0 | scalars | sync | 5: a u8, b i32 -40..=125, c u64 1..=65536, on bool, mode Mode | - | 2: sum u64, neg i64 | - | - | 0 | 5 | 0 | 2 | 0 |"
        ), "{m}");
        assert!(m.contains("| 14 | Retired: took a `u32` that no longer means anything. |"));
        assert!(m.contains("| 2 | scratch | 65536 B (64 KiB) | read-write |"));
        assert!(m.contains(&format!("- fingerprint: `{:#018x}`", iface.fingerprint)));
        assert!(m.contains("- version: 3"));
        assert!(m.contains("- service: `com.example.dextlink.Shapes`"));
        // Every row of the dispatch table has the header's 13 columns.
        let table: Vec<&str> = m.lines().skip(4).take_while(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 2 + 17);
        for line in table {
            assert_eq!(line.split(" | ").count(), 13, "{line}");
        }
        assert_eq!(m, markdown(&shapes()));
    }

    #[test]
    fn gaps_are_unused_rows() {
        let iface = load(
            "interface G { service \"g\"; version 1; 4 => reserved; 2 => fn a(x: bool) -> (y: u8); 9 => fn b(); }",
        );
        let t = text(&iface);
        assert_eq!(
            text_row(&t, "0..=1", "(unused)")[2..],
            ["-", "-", "-", "-", "-", "-", "0", "0", "0", "0", "0"]
        );
        assert_eq!(text_row(&t, "2", "a")[3], "1: x bool");
        assert_eq!(text_row(&t, "3", "(unused)").len(), 13);
        assert_eq!(text_row(&t, "4", "(reserved)").len(), 13);
        assert_eq!(text_row(&t, "5..=8", "(unused)").len(), 13);
        assert!(t.starts_with("G: dispatch table, 10 entries\n"));
        let m = markdown(&iface);
        assert!(m.contains("| 0..=1 | (unused) | - |"));
        assert!(m.contains("| 4 | (reserved) | - |"));
        assert_eq!(md("a|b\nc"), "a\\|b c");
    }
}
