//! Word-level redaction: a command line as a list of words (an argv, or free text split at white
//! space). What a word means depends on its neighbours and on the program it belongs to:
//!
//! - a secret flag's value is the next word unless that word is itself a flag (`--verbose
//!   --password X` redacts X and keeps `--verbose`), or `--flag=value`;
//! - a header or key word ending in `:` (`X-Api-Key: V`, `Authorization: Bearer V`);
//! - programs with their own conventions, recognised by name: `mysql -pPASS`, `curl -u user:pass`,
//!   `redis-cli -a PASS`, `wandb login KEY`, `docker login -p PASS`, `sshpass -p PASS`;
//! - a word that looks random (entropy) is redacted wherever it is.
//!
//! Values that cannot be secrets stay (allow-lists as in gitleaks and detect-secrets): paths,
//! numbers after a flag that is not a password, enumerated words (`none`, `auto`, `true`, ...),
//! shell references (`$HF_TOKEN`), and flags whose last word says the value is a reference
//! (`--private-key-file`, `--auth-mode`, `--key-frames`).

use super::{REDACTED, words};

/// Last words of a flag or variable name that make its value secret.
const SECRET_LAST: &[&str] = &[
    "TOKEN",
    "KEY",
    "APIKEY",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PW",
    "PWD",
    "PASSPHRASE",
    "SECRET",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "AUTH",
    "AUTHTOKEN",
    "ACCESSTOKEN",
    "SECRETKEY",
    "PRIVATEKEY",
    "COOKIE",
    "BEARER",
    "SIG",
    "SIGNATURE",
];

/// Secret words whose value is secret even when it is a number (a PIN, a numeric password).
const PASSWORD_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PW",
    "PWD",
    "PASSPHRASE",
    "SECRET",
    "PIN",
];

/// Values that are never secrets: the enumerated words of option parsers.
const ENUMERATED: &[&str] = &[
    "none", "null", "nil", "true", "false", "yes", "no", "on", "off", "auto", "default",
    "disabled", "enabled", "disable", "enable", "required", "optional", "prompt", "stdin", "env",
    "file", "ask", "-", "0", "1",
];

/// Programs whose `-p` is not a password: a partition, a port mapping, a parent directory, a
/// preserve flag, a pid.
const P_IS_NOT_PASSWORD: &[&str] = &[
    "srun",
    "sbatch",
    "salloc",
    "mkdir",
    "cp",
    "ssh",
    "scp",
    "rsync",
    "kubectl",
    "tar",
    "nc",
    "ncat",
    "netcat",
    "install",
    "ls",
    "ps",
    "top",
    "htop",
    "py-spy",
    "gdb",
    "strace",
    "perf",
    "lsof",
    "kill",
    "pgrep",
    "pstree",
    "torchrun",
    "unzip",
    "patch",
    "git",
    "mpirun",
    "ss",
    "netstat",
    "curl",
    "wget",
    "pip",
    "pip3",
    "nvidia-smi",
    "python-m",
    "ip",
    "chown",
    "chmod",
    "mv",
    "ln",
    "grep",
    "xargs",
    "redis-cli",
];

/// Programs with their own password conventions.
fn is_mysql(p: &str) -> bool {
    matches!(
        p,
        "mysql"
            | "mysqldump"
            | "mysqladmin"
            | "mysqlimport"
            | "mysqlshow"
            | "mariadb"
            | "mariadb-dump"
            | "mysqlsh"
    )
}

/// Programs a word may name (its basename): the context for the words after it.
const KNOWN_PROGRAMS: &[&str] = &[
    "curl",
    "redis-cli",
    "wandb",
    "docker",
    "podman",
    "nerdctl",
    "psql",
    "git",
    "sshpass",
    "srun",
    "sbatch",
    "salloc",
    "mkdir",
    "cp",
    "ssh",
    "scp",
    "rsync",
    "kubectl",
    "torchrun",
    "tar",
    "python",
    "python3",
    "accelerate",
    "deepspeed",
    "mpirun",
    "wget",
    "huggingface-cli",
    "hf",
    "pip",
    "pip3",
    "nc",
    "htpasswd",
    "lightning",
    "env",
    "sudo",
    "timeout",
    "nohup",
];

/// Where the secret lies in a word: the bytes of `word` to replace.
type Span = (usize, usize);

/// The word without the quotes, brackets and commas around it (an argv printed as a list, a
/// quoted header): its span in `word`.
fn bare(word: &str) -> Span {
    let trim = |c: char| {
        matches!(
            c,
            '\'' | '"' | '[' | ']' | '(' | ')' | ',' | '{' | '}' | ';'
        )
    };
    let start = word.len() - word.trim_start_matches(trim).len();
    let end = word.trim_end_matches(trim).len().max(start);
    (start, end)
}

fn sub(word: &str, s: Span) -> &str {
    &word[s.0..s.1]
}

/// Words of a flag or variable name, upper case (`--hf-token` -> HF, TOKEN).
fn name_words(name: &str) -> Vec<String> {
    words(name.trim_start_matches('-'))
}

/// How secret a name is: `None` (not), `Some(false)` (secret, numbers allowed), `Some(true)`
/// (password-like: even a number is secret). The last word decides (`--private-key-file` is a
/// path, `--auth-mode` an enumerated word, `--key-frames` a count); `PWD` alone is the working
/// directory.
pub fn name_secrecy(name: &str) -> Option<bool> {
    let w = name_words(name);
    let last = w.last()?;
    if w.len() == 1 && last == "PWD" && !name.starts_with("--") {
        return None;
    }
    let upper = name.to_ascii_uppercase();
    let glued = [
        "PASSWORD",
        "PASSWD",
        "APIKEY",
        "AUTHTOKEN",
        "ACCESSTOKEN",
        "SECRETKEY",
    ];
    let secret = SECRET_LAST.contains(&last.as_str())
        || glued.iter().any(|g| last.ends_with(g))
        || (w.len() >= 2 && w[w.len() - 2] == "API" && last == "KEY");
    if !secret {
        return None;
    }
    let password = PASSWORD_WORDS.contains(&last.as_str())
        || upper.ends_with("PASSWORD")
        || upper.ends_with("PASSWD");
    Some(password)
}

/// Whether `value` can be kept although a secret name or flag precedes it.
pub fn harmless_value(value: &str, password_like: bool) -> bool {
    let v = value.trim_matches(|c| c == '\'' || c == '"');
    if v.is_empty() || v == REDACTED || v.contains(REDACTED) {
        return true;
    }
    if ENUMERATED.iter().any(|e| v.eq_ignore_ascii_case(e)) && !password_like {
        return true;
    }
    // A shell reference is the name of the secret, not the secret.
    if v.starts_with('$') || v.starts_with("%(") {
        return true;
    }
    // A path after a password-like name (`--password /x`) may be the password itself.
    if is_path(v) && !password_like {
        return true;
    }
    // A count, a size, a port: at most five digits (a longer number may be a PIN or a code).
    !password_like && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A file system path: absolute, relative to `.`/`..`/`~`, with word-like components.
pub fn is_path(v: &str) -> bool {
    let rest = v
        .strip_prefix("~/")
        .or_else(|| v.strip_prefix("./"))
        .or_else(|| v.strip_prefix("../"))
        .or_else(|| v.strip_prefix('/'));
    let Some(rest) = rest else {
        return false;
    };
    !rest.contains("://")
        && rest.split('/').all(|c| {
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+@=,:".contains(&b))
        })
}

/// A `-p` value that is a port, a port mapping or a directory, never a password.
fn port_like(v: &str) -> bool {
    if let Ok(n) = v.parse::<u32>() {
        return n <= 65535;
    }
    !v.is_empty()
        && (is_path(v)
            || v.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b':' | b'-' | b'/'))
            || v.ends_with("/tcp")
            || v.ends_with("/udp"))
}

/// A flag word: `-x`, `--name`, not a negative number and not `-`/`--`.
fn is_flag(w: &str) -> bool {
    w.len() > 1
        && w.starts_with('-')
        && w != "--"
        && !w[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.')
}

/// Shannon entropy in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A word that looks like a generated secret (an API key, a password manager's output): at least
/// 20 characters of a token alphabet, upper and lower case letters and digits mixed through it
/// rather than words (`ResNet50-ImageNet-v2` is words; `Zx8qL2mN...` is not), and high entropy.
/// Hex strings (commit ids, digests) and UUIDs have no upper case and stay.
pub fn looks_random(w: &str) -> bool {
    if w.len() < 20 || w.len() > 512 {
        return false;
    }
    if !w
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'='))
    {
        return false;
    }
    let core = w.trim_end_matches('=');
    if core.contains('=') {
        return false;
    }
    if core.contains("//") || is_path(w) {
        return false;
    }
    let (mut upper, mut lower, mut digit) = (0, 0, 0);
    for b in core.bytes() {
        if b.is_ascii_uppercase() {
            upper += 1;
        } else if b.is_ascii_lowercase() {
            lower += 1;
        } else if b.is_ascii_digit() {
            digit += 1;
        }
    }
    if upper < 2 || lower < 2 || digit < 2 {
        return false;
    }
    // Words: runs of letters that read as words (Capitalised or lower case, 3+ letters). In a
    // random string of this alphabet most letters are in short runs or case changes.
    let mut in_words = 0usize;
    let bytes = core.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_uppercase() && bytes.get(i + 1).is_some_and(u8::is_ascii_uppercase) {
            // An upper-case word (`TORCHELASTIC`, `NCCL`).
            while i < bytes.len() && bytes[i].is_ascii_uppercase() {
                i += 1;
            }
            if i - start >= 3 {
                in_words += i - start;
            }
        } else if bytes[i].is_ascii_alphabetic() {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_lowercase() {
                i += 1;
            }
            if i - start >= 3 {
                in_words += i - start;
            }
        } else {
            i += 1;
        }
    }
    let letters = upper + lower;
    (in_words as f64) < 0.5 * letters as f64 && entropy(core) >= 3.5
}

/// A header-like word `Name:value` or `Name:` (value in the next word), the name possibly after
/// other text (`http.extraHeader="Authorization:`): the name, and the value with its offset.
fn header_name(w: &str) -> Option<(&str, &str, usize)> {
    let colon = w.find(':')?;
    let (head, rest) = (&w[..colon], &w[colon + 1..]);
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let start = head.bytes().rposition(|b| !is_name(b)).map_or(0, |i| i + 1);
    let name = &head[start..];
    if name.is_empty() || rest.starts_with("//") {
        return None;
    }
    // Text before the name ends in a quote or `=`; anything else is not a header.
    if start > 0 && !matches!(head.as_bytes()[start - 1], b'"' | b'\'' | b'=') {
        return None;
    }
    Some((name, rest, colon + 1))
}

fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "private-token"
    ) || name_secrecy(name).is_some()
}

/// Authentication schemes that precede the secret in an Authorization value.
fn is_scheme(w: &str) -> bool {
    matches!(
        w.to_ascii_lowercase().as_str(),
        "bearer" | "basic" | "token" | "digest" | "apikey" | "negotiate" | "aws4-hmac-sha256"
    )
}

/// What to redact in `words`: for each word, byte spans to replace by `[redacted]`.
pub fn secret_spans(words: &[&str]) -> Vec<Vec<Span>> {
    let mut out: Vec<Vec<Span>> = vec![Vec::new(); words.len()];
    let mut program = String::new();
    let mut subcommand = String::new();
    let mut i = 0;
    // Mark the bare part of word j (the value of something before it).
    let mark_value = |out: &mut Vec<Vec<Span>>, j: usize, password: bool| {
        if let Some(w) = words.get(j).filter(|w| !w.contains(REDACTED)) {
            let s = bare(w);
            let v = sub(w, s);
            if !is_flag(v) && v != "--" && !harmless_value(v, password) {
                out[j].push(s);
            }
        }
    };
    while i < words.len() {
        let w = words[i];
        if w.contains(REDACTED) {
            i += 1;
            continue;
        }
        let s = bare(w);
        let b = sub(w, s);
        // `NAME=value` (an environment assignment, quoted or not): the name decides.
        if let Some(eq) = b.find('=').filter(|&eq| eq > 0 && !b.starts_with('-')) {
            let name = &b[..eq];
            let value = b[eq + 1..].trim_matches(|c| c == '\'' || c == '"');
            if name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
                && super::is_secret_name(name)
            {
                if !harmless_value(value, super::is_password_name(name)) {
                    out[i].push((s.0 + eq + 1, s.1));
                }
                i += 1;
                continue;
            }
        }
        if matches!(b, "&&" | "||" | "|" | ";" | "&") || w.ends_with(';') {
            program.clear();
            subcommand.clear();
        }
        let base = b.rsplit('/').next().unwrap_or(b);
        let base = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let base_full = b.rsplit('/').next().unwrap_or(b);
        if !is_flag(b)
            && (KNOWN_PROGRAMS.contains(&base_full) || is_mysql(base_full) || base == "python")
        {
            program = if base == "python" {
                "python".into()
            } else {
                base_full.to_string()
            };
            subcommand.clear();
            i += 1;
            continue;
        }
        if !program.is_empty() && subcommand.is_empty() && !is_flag(b) && !b.contains('=') {
            subcommand = b.to_string();
            // `wandb login KEY`: the word after `login` (flags skipped) is the key.
            if program == "wandb" && b == "login" {
                let mut j = i + 1;
                while j < words.len() && is_flag(sub(words[j], bare(words[j]))) {
                    j += 1;
                }
                mark_value(&mut out, j, true);
                i = j + 1;
                continue;
            }
        }
        if is_flag(b) {
            let dashes = if b.starts_with("--") { 2 } else { 1 };
            let (flag, attached) = match b.find('=') {
                Some(eq) => (&b[..eq], Some(eq + 1)),
                None => (b, None),
            };
            // Program conventions for short flags, attached or not.
            let short = dashes == 1 && flag.len() >= 2;
            let letter = flag.as_bytes().get(1).copied();
            if short && attached.is_none() {
                let mysql_like = is_mysql(&program)
                    || program == "sshpass"
                    || (matches!(program.as_str(), "docker" | "podman" | "nerdctl")
                        && subcommand == "login");
                if letter == Some(b'p') && flag.len() > 2 && mysql_like {
                    out[i].push((s.0 + 2, s.1));
                    i += 1;
                    continue;
                }
                if program == "curl" && letter == Some(b'u') {
                    let value_of = |v: &str| v.find(':').map(|c| c + 1);
                    if flag.len() > 2 {
                        if let Some(c) = value_of(&flag[2..]) {
                            out[i].push((s.0 + 2 + c, s.1));
                        }
                        i += 1;
                        continue;
                    }
                    if let Some(n) = words.get(i + 1) {
                        let ns = bare(n);
                        if let Some(c) = value_of(sub(n, ns)) {
                            out[i + 1].push((ns.0 + c, ns.1));
                        }
                    }
                    i += 2;
                    continue;
                }
                if flag == "-a" && program == "redis-cli" {
                    mark_value(&mut out, i + 1, true);
                    i += 2;
                    continue;
                }
                if flag == "-p" {
                    let docker = matches!(program.as_str(), "docker" | "podman" | "nerdctl");
                    let password_p = if docker {
                        subcommand == "login"
                    } else {
                        !P_IS_NOT_PASSWORD.contains(&program.as_str())
                    };
                    // mysql's `-p` takes no separate value: the next word is the database,
                    // unless it cannot be a database name (`-p Hunter2!` typed by mistake).
                    let plain = |v: &str| {
                        v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
                    };
                    if password_p
                        && words.get(i + 1).is_some_and(|n| {
                            let v = sub(n, bare(n));
                            !(port_like(v) || (is_mysql(&program) && plain(v)))
                        })
                    {
                        mark_value(&mut out, i + 1, true);
                        i += 2;
                    } else {
                        i += 1;
                    }
                    continue;
                }
            }
            if program == "curl" && (flag == "--user" || flag == "--proxy-user") {
                let target = match attached {
                    Some(a) => Some((i, s.0 + a)),
                    None => words.get(i + 1).map(|n| (i + 1, bare(n).0)),
                };
                if let Some((j, from)) = target {
                    let end = if j == i { s.1 } else { bare(words[j]).1 };
                    if let Some(c) = words[j][from..end].find(':') {
                        out[j].push((from + c + 1, end));
                    }
                }
                i += if attached.is_some() { 1 } else { 2 };
                continue;
            }
            if let Some(password) = name_secrecy(&flag[dashes..]) {
                match attached {
                    Some(a) => {
                        let v = &b[a..];
                        if !harmless_value(v, password) {
                            out[i].push((s.0 + a, s.1));
                        }
                        i += 1;
                    }
                    None => {
                        // The value is the next word unless that is a flag: `--token --verbose`.
                        mark_value(&mut out, i + 1, password);
                        i += 2;
                    }
                }
                continue;
            }
            i += 1;
            continue;
        }
        // Header-like words: `X-Api-Key: V`, `Authorization: Bearer V`, `password:hunter2`.
        if let Some((name, rest, at)) = header_name(b).filter(|h| secret_header(h.0)) {
            {
                let password = name_secrecy(name).unwrap_or(true);
                if rest.is_empty() {
                    let mut j = i + 1;
                    if words.get(j).is_some_and(|n| is_scheme(sub(n, bare(n)))) {
                        j += 1;
                    }
                    mark_value(&mut out, j, password);
                    i = j + 1;
                    continue;
                }
                if is_scheme(rest) {
                    mark_value(&mut out, i + 1, password);
                    i += 2;
                    continue;
                }
                if !harmless_value(rest, password) {
                    out[i].push((s.0 + at, s.1));
                }
                i += 1;
                continue;
            }
        }
        // A generated-looking word, or the value of `NAME=value`.
        let (vs, v) = match b.find('=') {
            Some(eq) if eq > 0 => ((s.0 + eq + 1, s.1), &b[eq + 1..]),
            _ => (s, b),
        };
        if looks_random(v) {
            out[i].push(vs);
        }
        i += 1;
    }
    out
}

/// Replace `spans` of `word` by `[redacted]`.
pub fn apply(word: &str, spans: &[Span]) -> String {
    let mut spans: Vec<Span> = spans.iter().copied().filter(|(a, b)| b > a).collect();
    if spans.is_empty() {
        return word.to_string();
    }
    spans.sort();
    let mut out = String::with_capacity(word.len());
    let mut at = 0;
    for (a, b) in spans {
        if a < at {
            continue;
        }
        out.push_str(&word[at..a]);
        out.push_str(REDACTED);
        at = b;
    }
    out.push_str(&word[at..]);
    out
}

/// Redact the words of free text (split at white space, the white space kept).
pub fn scrub_words(text: &str) -> String {
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                pieces.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        pieces.push((s, text.len()));
    }
    let words: Vec<&str> = pieces.iter().map(|&(a, b)| &text[a..b]).collect();
    let spans = secret_spans(&words);
    if spans.iter().all(Vec::is_empty) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for ((a, b), sp) in pieces.iter().zip(&spans) {
        out.push_str(&text[at..*a]);
        out.push_str(&apply(&text[*a..*b], sp));
        at = *b;
    }
    out.push_str(&text[at..]);
    out
}

/// Redact an argument vector's word-level secrets (flag values, program conventions).
pub fn redact_words(argv: &mut [String]) {
    let spans = {
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        secret_spans(&words)
    };
    for (w, sp) in argv.iter_mut().zip(spans) {
        if !sp.is_empty() {
            if sp.iter().any(|&(a, b)| a == 0 && b == w.len()) {
                *w = REDACTED.to_string();
            } else {
                *w = apply(w, &sp);
            }
        }
    }
}
