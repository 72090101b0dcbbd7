//! A lightweight model of Rust source files for the audit checks.
//!
//! It is not a Rust parser: it strips comments and literal contents, splits
//! the rest into tokens, and recognises just enough structure to find test
//! functions (with their doc comments), `#[ignore]` attributes, and the
//! regions of a file that only compile under `cfg(test)`. String literals
//! are kept out of the code view, so fixtures inside strings (like the ones
//! in the audit's own tests) are never mistaken for code.

/// One lexical token, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) line: usize,
}

/// Token kinds the audit cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Identifier or keyword (raw identifiers without their `r#`).
    Ident(String),
    /// Any single punctuation character.
    Punct(char),
    /// A string literal's contents, escapes left as written.
    Str(String),
    /// A number, char or byte literal.
    Lit,
}

/// A source file after lexing.
#[derive(Debug, Default)]
pub(crate) struct Lexed {
    /// Per line (index = line - 1): code with comments removed and literal
    /// contents blanked (`"..."` becomes `""`).
    pub(crate) code_lines: Vec<String>,
    /// Tokens of the code.
    pub(crate) tokens: Vec<Token>,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    code: String,
    out: Lexed,
}

impl Lexer {
    fn at(&self, k: usize) -> Option<char> {
        self.chars.get(k).copied()
    }

    fn newline(&mut self) {
        let code = std::mem::take(&mut self.code);
        self.out.code_lines.push(code);
        self.line += 1;
    }

    fn push_tok(&mut self, tok: Tok, line: usize) {
        self.out.tokens.push(Token { tok, line });
    }

    /// Consumes a (possibly raw) string body starting after the opening
    /// quote; `hashes` is `None` for an escaped string.
    fn string_body(&mut self, hashes: Option<usize>) -> String {
        let mut content = String::new();
        while let Some(c) = self.at(self.i) {
            match (c, hashes) {
                ('\\', None) => {
                    content.push(c);
                    self.i += 1;
                    if let Some(next) = self.at(self.i) {
                        content.push(next);
                        self.i += 1;
                        if next == '\n' {
                            self.newline();
                        }
                    }
                }
                ('"', None) => {
                    self.i += 1;
                    return content;
                }
                ('"', Some(h)) if (1..=h).all(|k| self.at(self.i + k) == Some('#')) => {
                    self.i += 1 + h;
                    return content;
                }
                ('\n', _) => {
                    content.push(c);
                    self.i += 1;
                    self.newline();
                }
                _ => {
                    content.push(c);
                    self.i += 1;
                }
            }
        }
        content
    }

    fn string(&mut self, hashes: Option<usize>) {
        let line = self.line;
        self.code.push('"');
        let content = self.string_body(hashes);
        self.code.push('"');
        self.push_tok(Tok::Str(content), line);
    }

    /// At a `'`: a char literal (blanked) or a lifetime/label (kept).
    fn quote(&mut self) {
        let line = self.line;
        if self.at(self.i + 1) == Some('\\') {
            // Escaped char literal: skip the escaped char, then up to the close.
            let mut j = self.i + 3;
            while j < self.chars.len() && j < self.i + 14 && self.chars[j] != '\'' {
                j += 1;
            }
            self.i = j + 1;
            self.code.push_str("''");
            self.push_tok(Tok::Lit, line);
        } else if self.at(self.i + 2) == Some('\'') && self.at(self.i + 1) != Some('\n') {
            self.i += 3;
            self.code.push_str("''");
            self.push_tok(Tok::Lit, line);
        } else {
            self.i += 1;
            self.code.push('\'');
            self.push_tok(Tok::Punct('\''), line);
        }
    }

    fn word(&mut self) {
        let line = self.line;
        let start = self.i;
        while self.at(self.i).is_some_and(is_ident_continue) {
            self.i += 1;
        }
        let word: String = self.chars[start..self.i].iter().collect();
        // Raw strings (r"..", r#".."#, br".."), raw identifiers, byte strings.
        if word == "r" || word == "br" || word == "cr" {
            let mut h = 0;
            while self.at(self.i + h) == Some('#') {
                h += 1;
            }
            if self.at(self.i + h) == Some('"') {
                self.i += h + 1;
                self.code.push('"');
                let content = self.string_body(Some(h));
                self.code.push('"');
                self.push_tok(Tok::Str(content), line);
                return;
            }
            if word == "r" && h == 1 && self.at(self.i + 1).is_some_and(is_ident_start) {
                self.i += 1;
                let s = self.i;
                while self.at(self.i).is_some_and(is_ident_continue) {
                    self.i += 1;
                }
                let ident: String = self.chars[s..self.i].iter().collect();
                self.code.push_str(&ident);
                self.push_tok(Tok::Ident(ident), line);
                return;
            }
        }
        if (word == "b" || word == "c") && self.at(self.i) == Some('"') {
            self.i += 1;
            self.string(None);
            return;
        }
        if word == "b" && self.at(self.i) == Some('\'') {
            self.quote();
            return;
        }
        self.code.push_str(&word);
        self.push_tok(Tok::Ident(word), line);
    }

    fn run(mut self) -> Lexed {
        while let Some(c) = self.at(self.i) {
            match c {
                '\n' => {
                    self.i += 1;
                    self.newline();
                }
                '/' if self.at(self.i + 1) == Some('/') => {
                    while self.at(self.i).is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                '/' if self.at(self.i + 1) == Some('*') => {
                    self.i += 2;
                    self.code.push(' ');
                    let mut depth = 1usize;
                    while depth > 0 {
                        match (self.at(self.i), self.at(self.i + 1)) {
                            (None, _) => break,
                            (Some('\n'), _) => {
                                self.i += 1;
                                self.newline();
                            }
                            (Some('/'), Some('*')) => {
                                depth += 1;
                                self.i += 2;
                            }
                            (Some('*'), Some('/')) => {
                                depth -= 1;
                                self.i += 2;
                            }
                            _ => self.i += 1,
                        }
                    }
                }
                '"' => {
                    self.i += 1;
                    self.string(None);
                }
                '\'' => self.quote(),
                c if is_ident_start(c) => self.word(),
                c if c.is_ascii_digit() => {
                    let line = self.line;
                    while self.at(self.i).is_some_and(is_ident_continue)
                        || (self.at(self.i) == Some('.') && self.at(self.i + 1).is_some_and(|d| d.is_ascii_digit()))
                    {
                        self.i += 1;
                    }
                    self.code.push('0');
                    self.push_tok(Tok::Lit, line);
                }
                c if c.is_whitespace() => {
                    self.i += 1;
                    self.code.push(c);
                }
                c => {
                    self.i += 1;
                    self.code.push(c);
                    let line = self.line;
                    self.push_tok(Tok::Punct(c), line);
                }
            }
        }
        let code = std::mem::take(&mut self.code);
        self.out.code_lines.push(code);
        self.out
    }
}

/// Lexes Rust source text. Total: never fails, whatever the input.
pub(crate) fn lex(src: &str) -> Lexed {
    Lexer { chars: src.chars().collect(), i: 0, line: 1, code: String::new(), out: Lexed::default() }.run()
}

/// A test function found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestFn {
    /// The function's name.
    pub(crate) name: String,
    /// 1-based line of its `fn` keyword.
    pub(crate) line: usize,
    /// Text of the `///` doc lines directly above it (and between its
    /// attributes).
    pub(crate) docs: Vec<String>,
}

/// An `#[ignore]` (or `cfg_attr(.., ignore)`) attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IgnoreAttr {
    /// 1-based line of the attribute.
    pub(crate) line: usize,
    /// The function it applies to, when it applies to one.
    pub(crate) item: Option<String>,
}

/// An out-of-line module declared under `cfg(test)` (`#[cfg(test)] mod x;`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModDecl {
    /// Module name.
    pub(crate) name: String,
    /// Its `#[path = ".."]`, if any.
    pub(crate) path_attr: Option<String>,
}

/// A source file with the structure the checks need.
#[derive(Debug)]
pub(crate) struct ParsedFile {
    /// Path relative to the workspace root, `/`-separated.
    pub(crate) path: String,
    /// The raw text, per line (index = line - 1).
    pub(crate) raw_lines: Vec<String>,
    /// Code without comments and literal contents, per line.
    pub(crate) code_lines: Vec<String>,
    /// Tokens of the code.
    pub(crate) tokens: Vec<Token>,
    /// Test functions.
    pub(crate) tests: Vec<TestFn>,
    /// `#[ignore]` attributes.
    pub(crate) ignores: Vec<IgnoreAttr>,
    /// Inclusive 1-based line ranges that are test-only code: `cfg(test)`
    /// items, test function bodies, `proptest!` blocks.
    pub(crate) test_regions: Vec<(usize, usize)>,
    /// `cfg(test)` out-of-line module declarations.
    pub(crate) cfg_test_mods: Vec<ModDecl>,
    /// The whole file is test code (under a `tests/` directory, or a module
    /// declared under `cfg(test)`). Set by [`Workspace::parse`].
    pub(crate) is_test_file: bool,
}

impl ParsedFile {
    /// Whether 1-based `line` is test-only code.
    pub(crate) fn is_test_line(&self, line: usize) -> bool {
        self.is_test_file || self.test_regions.iter().any(|&(a, b)| a <= line && line <= b)
    }
}

/// One attribute: its path (`tokio::test` → `["tokio", "test"]`) and tokens.
struct Attr {
    line: usize,
    path: Vec<String>,
    tokens: Vec<Tok>,
}

impl Attr {
    fn new(tokens: &[Token], line: usize) -> Self {
        let mut path = Vec::new();
        for t in tokens {
            match &t.tok {
                Tok::Ident(s) => path.push(s.clone()),
                Tok::Punct(':') => {}
                _ => break,
            }
        }
        Attr { line, path, tokens: tokens.iter().map(|t| t.tok.clone()).collect() }
    }

    fn has_ident(&self, name: &str) -> bool {
        self.tokens.iter().any(|t| matches!(t, Tok::Ident(s) if s == name))
    }

    fn first_is(&self, name: &str) -> bool {
        self.path.first().is_some_and(|p| p == name)
    }

    /// `#[test]`, `#[tokio::test]`, `#[tokio::test(flavor = ..)]`, ...
    fn is_test(&self) -> bool {
        self.path.last().is_some_and(|p| p == "test") && !self.first_is("cfg") && !self.first_is("cfg_attr")
    }

    fn is_ignore(&self) -> bool {
        self.path == ["ignore"] || (self.path == ["cfg_attr"] && self.has_ident("ignore"))
    }

    /// `cfg(test)` or `cfg(all(test, ..))`: code that exists only in tests.
    fn is_cfg_test(&self) -> bool {
        self.path == ["cfg"] && self.has_ident("test") && !self.has_ident("not") && !self.has_ident("any")
    }

    fn path_value(&self) -> Option<String> {
        if self.path != ["path"] {
            return None;
        }
        self.tokens.iter().find_map(|t| match t {
            Tok::Str(s) => Some(s.clone()),
            _ => None,
        })
    }
}

fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token { tok: Tok::Ident(s), .. }) => Some(s.as_str()),
        _ => None,
    }
}

/// Index of the delimiter closing the one at `open`, or the last token.
fn match_delim(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// Skips visibility and qualifiers (`pub(crate) async unsafe ...`).
fn skip_modifiers(toks: &[Token], mut k: usize) -> usize {
    const MODIFIERS: &[&str] = &["pub", "crate", "super", "self", "in", "async", "const", "unsafe", "extern", "default", "safe"];
    while let Some(t) = toks.get(k) {
        let skip = match &t.tok {
            Tok::Ident(s) => MODIFIERS.contains(&s.as_str()),
            Tok::Punct('(' | ')' | ':') | Tok::Str(_) => true,
            _ => false,
        };
        if !skip {
            break;
        }
        k += 1;
    }
    k.min(toks.len().saturating_sub(1))
}

/// Index of the token ending the item that starts at `k`: its `;`, its
/// closing `}`, or a `,` / `}` that ends the enclosing list or block.
fn item_end(toks: &[Token], k: usize) -> usize {
    let mut depth = 0usize;
    let mut j = k;
    while let Some(t) = toks.get(j) {
        match t.tok {
            Tok::Punct('(' | '[') => depth += 1,
            Tok::Punct(')' | ']') => {
                if depth == 0 {
                    return j.saturating_sub(1).max(k);
                }
                depth -= 1;
            }
            Tok::Punct('{') if depth == 0 => return match_delim(toks, j),
            Tok::Punct(';' | ',') if depth == 0 => return j,
            Tok::Punct('}') if depth == 0 => return j.saturating_sub(1).max(k),
            _ => {}
        }
        j += 1;
    }
    toks.len().saturating_sub(1)
}

fn doc_text(raw: &str) -> Option<&str> {
    let t = raw.trim_start();
    if t.starts_with("///") && !t.starts_with("////") {
        Some(t.trim_start_matches('/').trim())
    } else {
        None
    }
}

/// Doc lines between `first_line` and `fn_line`, plus the run of doc lines
/// directly above `first_line`.
fn collect_docs(raw_lines: &[String], first_line: usize, fn_line: usize) -> Vec<String> {
    let mut docs = Vec::new();
    let mut l = first_line;
    while l > 1 {
        match raw_lines.get(l - 2).and_then(|r| doc_text(r)) {
            Some(d) => {
                docs.push(d.to_string());
                l -= 1;
            }
            None => break,
        }
    }
    docs.reverse();
    for line in first_line..fn_line {
        if let Some(d) = raw_lines.get(line - 1).and_then(|r| doc_text(r)) {
            docs.push(d.to_string());
        }
    }
    docs
}

/// Lexes and analyses one file. Total: never fails, whatever the input.
pub(crate) fn parse_file(path: &str, content: &str) -> ParsedFile {
    let lexed = lex(content);
    let raw_lines: Vec<String> = content.split('\n').map(str::to_string).collect();
    let toks = &lexed.tokens;
    let mut tests = Vec::new();
    let mut ignores = Vec::new();
    let mut regions = Vec::new();
    let mut cfg_test_mods = Vec::new();
    let mut proptest_blocks: Vec<(usize, usize)> = Vec::new();
    let mut attrs: Vec<Attr> = Vec::new();

    let mut i = 0;
    while i < toks.len() {
        let line = toks[i].line;
        if is_punct(toks.get(i), '#') {
            let inner = is_punct(toks.get(i + 1), '!');
            let open = if inner { i + 2 } else { i + 1 };
            if is_punct(toks.get(open), '[') {
                let close = match_delim(toks, open);
                if !inner {
                    attrs.push(Attr::new(&toks[open + 1..close.max(open + 1)], line));
                }
                i = close + 1;
                continue;
            }
        }
        if ident(toks.get(i)) == Some("proptest") && is_punct(toks.get(i + 1), '!') && (is_punct(toks.get(i + 2), '{') || is_punct(toks.get(i + 2), '(')) {
            let close = match_delim(toks, i + 2);
            proptest_blocks.push((i + 2, close));
            regions.push((line, toks[close].line));
        }
        let kw_here = ident(toks.get(i));
        if attrs.is_empty() && kw_here != Some("fn") && kw_here != Some("mod") {
            i += 1;
            continue;
        }
        // An item (or statement) starts here; pending attributes apply to it.
        let first_line = attrs.first().map_or(line, |a| a.line);
        let k = skip_modifiers(toks, i);
        let end = item_end(toks, k);
        let end_line = toks[end].line;
        let kw = ident(toks.get(k));
        let name = ident(toks.get(k + 1)).map(str::to_string);
        let cfg_test = attrs.iter().any(Attr::is_cfg_test);
        let mut fn_name = None;
        match (kw, &name) {
            (Some("fn"), Some(name)) => {
                let in_proptest = proptest_blocks.iter().any(|&(a, b)| a < k && k < b);
                if attrs.iter().any(Attr::is_test) || in_proptest {
                    tests.push(TestFn { name: name.clone(), line: toks[k].line, docs: collect_docs(&raw_lines, first_line, toks[k].line) });
                    regions.push((first_line, end_line));
                }
                fn_name = Some(name.clone());
            }
            (Some("mod"), Some(name)) if cfg_test && is_punct(toks.get(k + 2), ';') => {
                cfg_test_mods.push(ModDecl { name: name.clone(), path_attr: attrs.iter().find_map(Attr::path_value) });
            }
            _ => {}
        }
        if cfg_test {
            regions.push((first_line, end_line));
        }
        for a in attrs.iter().filter(|a| a.is_ignore()) {
            ignores.push(IgnoreAttr { line: a.line, item: fn_name.clone() });
        }
        attrs.clear();
        i = k + 1;
    }

    ParsedFile {
        path: path.to_string(),
        raw_lines,
        code_lines: lexed.code_lines,
        tokens: lexed.tokens,
        tests,
        ignores,
        test_regions: regions,
        cfg_test_mods,
        is_test_file: false,
    }
}

/// A Rust source file: path relative to the workspace root and its text.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// Relative, `/`-separated path.
    pub(crate) path: String,
    /// File contents.
    pub(crate) content: String,
}

/// Every scanned source file, analysed.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// The files, in the order given.
    pub(crate) files: Vec<ParsedFile>,
}

fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else {
        format!("{dir}/{rest}")
    }
}

/// Directory holding the child modules of the module in `path`.
fn module_dir(path: &str) -> String {
    let (dir, file) = split_dir(path);
    match file {
        "lib.rs" | "main.rs" | "mod.rs" => dir.to_string(),
        _ => join(dir, file.strip_suffix(".rs").unwrap_or(file)),
    }
}

fn under_tests_dir(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    parts.contains(&"tests")
}

impl Workspace {
    /// Analyses `files` and works out which whole files are test code.
    pub(crate) fn parse(files: &[SourceFile]) -> Self {
        let mut parsed: Vec<ParsedFile> = files.iter().map(|f| parse_file(&f.path, &f.content)).collect();
        let mut test_paths: Vec<String> = Vec::new();
        for f in &parsed {
            for m in &f.cfg_test_mods {
                match &m.path_attr {
                    Some(p) => test_paths.push(join(split_dir(&f.path).0, p)),
                    None => {
                        let base = module_dir(&f.path);
                        test_paths.push(join(&base, &format!("{}.rs", m.name)));
                        test_paths.push(join(&base, &format!("{}/mod.rs", m.name)));
                    }
                }
            }
        }
        let test_dirs: Vec<String> = test_paths.iter().map(|p| format!("{}/", module_dir(p))).collect();
        for f in &mut parsed {
            f.is_test_file = under_tests_dir(&f.path) || test_paths.contains(&f.path) || test_dirs.iter().any(|d| f.path.starts_with(d.as_str()));
        }
        Workspace { files: parsed }
    }

    /// Analyses a single file (for tests).
    #[cfg(test)]
    pub(crate) fn single(path: &str, content: &str) -> Self {
        Self::parse(&[SourceFile { path: path.to_string(), content: content.to_string() }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ws: &Workspace) -> Vec<String> {
        ws.files.iter().flat_map(|f| f.tests.iter().map(|t| t.name.clone())).collect()
    }

    #[test]
    fn lexer_strips_comments_and_literal_contents() {
        let src = r####"let a = "fn x() { #[test] }"; // fn y
let b = r#"a "quoted" } brace"#; /* fn z
   still comment */ let c = '{';
let d = b"bytes"; let e = 'a'; fn f<'a>(x: &'a str) {}
"####;
        let l = lex(src);
        assert_eq!(l.code_lines[0].trim_end(), r#"let a = "";"#);
        assert_eq!(l.code_lines[1].trim_end(), r#"let b = "";"#);
        assert_eq!(l.code_lines[2].trim(), "let c = '';");
        assert!(l.code_lines[3].contains("fn f<'a>(x: &'a str) {}"));
        assert!(l.tokens.contains(&Token { tok: Tok::Str(r#"a "quoted" } brace"#.to_string()), line: 2 }));
    }

    #[test]
    fn finds_tests_with_attributes_docs_and_proptest_blocks() {
        let src = r##"
fn helper() {}

#[cfg(test)]
mod tests {
    /// First line.
    /// Cites a rule.
    #[test]
    fn plain() { let s = "#[test] fn fake() {}"; }

    #[tokio::test(flavor = "multi_thread")]
    /// Between attributes.
    async fn tokio_one() {}

    #[test] fn same_line() {}

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        /// Prop doc.
        #[test]
        fn prop_one(x in 0..10u8) { let _ = x; }
    }

    #[test]
    #[ignore = "slow"]
    pub fn ignored_one() {}
}
"##;
        let ws = Workspace::single("crates/a/src/lib.rs", src);
        assert_eq!(names(&ws), ["plain", "tokio_one", "same_line", "prop_one", "ignored_one"]);
        let f = &ws.files[0];
        assert_eq!(f.tests[0].docs, ["First line.", "Cites a rule."]);
        assert_eq!(f.tests[0].line, 9);
        assert_eq!(f.tests[1].docs, ["Between attributes."]);
        assert_eq!(f.tests[3].docs, ["Prop doc."]);
        assert_eq!(f.ignores, [IgnoreAttr { line: 25, item: Some("ignored_one".to_string()) }]);
        assert!(!f.is_test_line(2));
        assert!(f.is_test_line(9));
        assert!(f.is_test_line(27));
        assert!(!f.is_test_line(28));
    }

    #[test]
    fn out_of_line_test_modules_and_tests_dirs_are_test_files() {
        let files = [
            ("crates/a/src/lib.rs", "#[cfg(test)]\nmod tests;\nmod real;\n"),
            ("crates/a/src/tests.rs", "fn x() {}"),
            ("crates/a/src/tests/deep.rs", "fn x() {}"),
            ("crates/a/src/real.rs", "#[cfg(test)]\n#[path = \"real_t.rs\"]\nmod t;\n"),
            ("crates/a/src/real_t.rs", "fn x() {}"),
            ("crates/a/tests/it.rs", "fn x() {}"),
            ("crates/a/src/other.rs", "fn x() {}"),
        ]
        .map(|(p, c)| SourceFile { path: p.to_string(), content: c.to_string() });
        let ws = Workspace::parse(&files);
        let flags: Vec<(&str, bool)> = ws.files.iter().map(|f| (f.path.as_str(), f.is_test_file)).collect();
        assert_eq!(
            flags,
            [
                ("crates/a/src/lib.rs", false),
                ("crates/a/src/tests.rs", true),
                ("crates/a/src/tests/deep.rs", true),
                ("crates/a/src/real.rs", false),
                ("crates/a/src/real_t.rs", true),
                ("crates/a/tests/it.rs", true),
                ("crates/a/src/other.rs", false),
            ]
        );
    }

    #[test]
    fn lexer_and_parser_are_total_on_junk() {
        for src in ["", "#", "#[", "fn", "r#\"", "'", "/* unclosed", "\"unclosed", "proptest! {"] {
            let ws = Workspace::single("x.rs", src);
            assert!(ws.files[0].tests.is_empty(), "{src}");
        }
    }
}
