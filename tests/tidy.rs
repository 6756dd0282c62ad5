//! Keeps the code's shape (rust-analyzer's tidy tests): no source file over 800 lines, no
//! function over 120, every module says what it is for in a `//!` line, and no public
//! function returns `Result<_, String>` (errors are typed).

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

fn rust_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["src", "xtask/src", "tests"] {
        collect(&root.join(dir), &mut out);
    }
    out.sort();
    assert!(out.len() > 20, "too few source files found: {out:?}");
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The source with comments, strings and char literals blanked out (newlines kept), so
/// braces and keywords can be counted.
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            blank(&mut out, i, end);
            i = end;
        } else if let Some(hashes) = raw_string_start(rest) {
            let open = i + rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let end = src[open..]
                .find(&close)
                .map_or(b.len(), |n| open + n + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F}'); otherwise a lifetime.
            let end = if b.get(i + 1) == Some(&b'\\') {
                src[i + 2..].find('\'').map(|n| i + 2 + n + 1)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br##"` ...: the number of `#`.
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let after_b = rest.strip_prefix(b"b").unwrap_or(rest);
    let after_r = after_b.strip_prefix(b"r")?;
    let hashes = after_r.iter().take_while(|&&c| c == b'#').count();
    (after_r.get(hashes) == Some(&b'"')).then_some(hashes)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// (name, first line, line count) of every function with a body.
fn functions(src: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(src);
    let line_of = |pos: usize| code[..pos].iter().filter(|&&c| c == b'\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < code.len() {
        let keyword = &code[i..i + 3] == b"fn "
            && (i == 0 || !is_ident(code[i - 1]))
            && is_ident(code[i + 3]);
        if !keyword {
            i += 1;
            continue;
        }
        let name_end = (i + 3..code.len()).find(|&j| !is_ident(code[j])).unwrap();
        let name = String::from_utf8_lossy(&code[i + 3..name_end]).to_string();
        // The body starts at the first `{` outside parentheses and angle brackets; a `;`
        // first means a declaration without a body.
        let (mut depth, mut j) = (0i32, name_end);
        let body = loop {
            match code.get(j) {
                None => break None,
                Some(b'(' | b'[') => depth += 1,
                Some(b')' | b']') => depth -= 1,
                Some(b';') if depth == 0 => break None,
                Some(b'{') if depth == 0 => break Some(j),
                _ => {}
            }
            j += 1;
        };
        let Some(open) = body else {
            i = name_end;
            continue;
        };
        let mut level = 0;
        let mut close = open;
        for (k, &c) in code.iter().enumerate().skip(open) {
            match c {
                b'{' => level += 1,
                b'}' => {
                    level -= 1;
                    if level == 0 {
                        close = k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, line_of(i), line_of(close) - line_of(i) + 1));
        i = name_end;
    }
    out
}

#[test]
fn no_source_file_is_too_long() {
    let long: Vec<String> = rust_files()
        .iter()
        .map(|p| {
            (
                relative(p),
                std::fs::read_to_string(p).unwrap().lines().count(),
            )
        })
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(p, n)| format!("{p}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_function_is_too_long() {
    let mut long = Vec::new();
    for path in rust_files() {
        let src = std::fs::read_to_string(&path).unwrap();
        for (name, line, lines) in functions(&src) {
            if lines > MAX_FN_LINES {
                long.push(format!(
                    "{}:{line}: fn {name}: {lines} lines",
                    relative(&path)
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn every_module_says_what_it_is_for() {
    let silent: Vec<String> = rust_files()
        .iter()
        .filter(|p| {
            let src = std::fs::read_to_string(p).unwrap();
            !src.lines().any(|l| l.starts_with("//!"))
        })
        .map(|p| relative(p))
        .collect();
    assert!(
        silent.is_empty(),
        "modules without a //! line:\n{}",
        silent.join("\n")
    );
}

#[test]
fn public_functions_return_typed_errors() {
    let mut stringly = Vec::new();
    for path in rust_files() {
        let src = std::fs::read_to_string(&path).unwrap();
        let code = String::from_utf8(code_only(&src)).unwrap();
        for (n, line) in code.lines().enumerate() {
            let squeezed: String = line.split_whitespace().collect();
            if line.trim_start().starts_with("pub fn") && squeezed.contains(",String>") {
                let signature = src.lines().nth(n).unwrap_or_default().trim();
                if signature.contains("Result<") {
                    stringly.push(format!("{}:{}: {signature}", relative(&path), n + 1));
                }
            }
        }
    }
    assert!(
        stringly.is_empty(),
        "public functions returning Result<_, String>:\n{}",
        stringly.join("\n")
    );
}

/// The scanner itself: strings, comments and lifetimes do not confuse it.
#[test]
fn the_function_scanner_counts_bodies_not_strings() {
    let src = "fn a<'x>(s: &'x str) -> char {\n    let _ = \"}\";\n    // }\n    '{'\n}\n\
               trait T { fn b(&self); }\nfn c() { let _ = r#\"{\"#; }\n";
    let found = functions(src);
    assert_eq!(
        found,
        vec![("a".to_string(), 1, 5), ("c".to_string(), 7, 1)]
    );
}
