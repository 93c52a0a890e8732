//! Redaction and anonymisation of a whole document (a `serde_json::Value`), so that every output
//! format is rendered from the same cleaned value.
//!
//! Three kinds of secret are removed, each replaced by `[redacted]`:
//! - values under keys (environment variable names, YAML/JSON keys) whose name suggests a secret:
//!   TOKEN, SECRET, PASSWORD, PASSWD, KEY, CREDENTIAL, AUTH, COOKIE, PRIVATE, SESSION, ...;
//! - credentials inside URLs: `scheme://user:pass@host` becomes `scheme://[redacted]@host`;
//! - well-known token shapes anywhere, command lines included (`hf_`, `ghp_`, `github_pat_`,
//!   `AKIA`, `sk-`, `xoxb-`, JWTs, PEM private keys, ...), `--password X` / `--token=X` argument
//!   pairs and `NAME=value` assignments whose NAME suggests a secret.

mod args;

pub use args::{harmless_value, is_path, looks_random, name_secrecy};

use std::collections::BTreeMap;
use std::sync::{LazyLock, OnceLock};

use regex::Regex;
use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// What `--no-redact` turns off, for its warning.
pub const WHAT_REDACTION_COVERS: &str = "values of variables and keys named like secrets (TOKEN, SECRET, PASSWORD, KEY, \
     CREDENTIAL, AUTH, COOKIE, PRIVATE, SESSION), credentials in URLs, and token shapes (hf_, ghp_, github_pat_, AKIA, sk-, \
     xox?-, JWT, PEM private keys, --password/--token arguments) in command lines, environment and the included run file";

/// Last words that make a variable or key name secret (`HF_TOKEN`, `aws_secret_access_key`,
/// `apiKey`, `SSH_PRIVATE`), so `MONKEY_PATCH`, `TOKENIZERS_PARALLELISM`, `KEY_FRAMES` or
/// `XDG_SESSION_TYPE` stay readable: the last word says what the value is.
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWORDS",
    "PASSWD",
    "PASS",
    "PASSPHRASE",
    "KEY",
    "KEYS",
    "APIKEY",
    "ACCESSKEY",
    "SECRETKEY",
    "PRIVATEKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "AUTH",
    "OAUTH",
    "AUTHTOKEN",
    "ACCESSTOKEN",
    "AUTHORIZATION",
    "COOKIE",
    "COOKIES",
    "PRIVATE",
    "SESSION",
    "SESSIONID",
    "SIGNATURE",
    "SIG",
    "BEARER",
];

/// Secret words glued into a longer last word (`DBPASSWORD`, `HFAPIKEY`).
const SECRET_SUBSTRINGS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "CREDENTIAL",
    "APIKEY",
    "ACCESSTOKEN",
    "AUTHTOKEN",
    "PRIVATEKEY",
];

/// Last words that qualify the word before them (`AWS_ACCESS_KEY_ID`, `SSH_KEY_DATA`).
const QUALIFIERS: &[&str] = &[
    "ID", "IDS", "VALUE", "DATA", "STRING", "B64", "BASE64", "HEX", "JSON", "RAW", "ENCODED",
];

/// Split a name into upper-case words at `_`, `-`, `.`, spaces and camelCase boundaries.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_uppercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether a variable or key name suggests its value is a secret: its last word (or the word
/// before a qualifier like `_ID`) is a secret word.
pub fn is_secret_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 128 {
        return false;
    }
    let w = words(name);
    let Some(mut last) = w.last() else {
        return false;
    };
    if w.len() >= 2 && QUALIFIERS.contains(&last.as_str()) {
        last = &w[w.len() - 2];
    }
    // `PWD` alone is the working directory; as part of a name (`MYSQL_PWD`) it is a password.
    SECRET_WORDS.contains(&last.as_str())
        || SECRET_SUBSTRINGS.iter().any(|s| last.contains(s))
        || (w.len() > 1 && last == "PWD")
}

/// Whether a secret name holds a password, secret even when it is a number (`DB_PASSWORD`,
/// `MYSQL_PWD`); a `KEY_FRAMES=10` or `XDG_SESSION_ID=3` count stays.
pub(crate) fn is_password_name(name: &str) -> bool {
    name_secrecy(name) == Some(true) || {
        let w = words(name);
        w.len() > 1 && w.last().is_some_and(|l| l == "PWD")
    }
}

/// A token shape: its regex, compiled on first need, and literals every match contains (a
/// string without any of them is not searched, and the regex not compiled: compiling all of
/// them took 2.5 ms, a third of a `doctor ports` run on a quiet machine).
struct Pattern {
    re: &'static str,
    /// Replacement text; `$1` etc. keep the parts around the secret.
    with: &'static str,
    needles: &'static [&'static str],
    /// The needles match in any ASCII case (the regex is `(?i)`).
    any_case: bool,
    /// A match is replaced only when this holds for its group `s` (the secret's shape).
    only: Option<fn(&str) -> bool>,
    compiled: OnceLock<Regex>,
}

impl Pattern {
    const fn new(re: &'static str, with: &'static str, needles: &'static [&'static str]) -> Self {
        Pattern {
            re,
            with,
            needles,
            any_case: false,
            only: None,
            compiled: OnceLock::new(),
        }
    }

    const fn only(mut self, f: fn(&str) -> bool) -> Self {
        self.only = Some(f);
        self
    }

    const fn any_case(mut self) -> Self {
        self.any_case = true;
        self
    }

    fn may_match(&self, text: &str) -> bool {
        // Unicode case folding lets `K` (Kelvin) match `k`: outside ASCII, always search.
        if self.any_case && !text.is_ascii() {
            return true;
        }
        self.needles.iter().any(|n| {
            if self.any_case {
                text.as_bytes()
                    .windows(n.len())
                    .any(|w| w.eq_ignore_ascii_case(n.as_bytes()))
            } else {
                text.contains(n)
            }
        })
    }

    fn regex(&self) -> &Regex {
        self.compiled
            .get_or_init(|| Regex::new(self.re).expect("valid redaction regex"))
    }
}

static PATTERNS: [Pattern; 17] = [
    // PEM private keys, whole block (or to the end when the block is cut).
    Pattern::new(
        r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
        REDACTED,
        &["-----BEGIN"],
    ),
    // Credentials in URLs: scheme://user:pass@host -> scheme://[redacted]@host; the user may
    // be empty (`redis://:pw@host`) and the password may hold `@` (up to the last `@` before
    // the path).
    Pattern::new(
        r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@'\x22]*:[^/\s'\x22]*@",
        "${1}[redacted]@",
        &["://"],
    ),
    // A token as the only user information (`https://TOKEN@github.com`, git credential URLs):
    // redacted when it looks generated; `ssh://git@host` stays.
    Pattern::new(
        r"(?i)\b([a-z][a-z0-9+.\-]*://)(?P<s>[A-Za-z0-9_\-.~%+]{16,})@",
        "${1}[redacted]@",
        &["://"],
    )
    .only(|u| looks_random(u) || u.len() >= 32),
    // Credentials without a scheme: `http_proxy=user:pw@proxy:3128`, `user:pw@host`.
    Pattern::new(
        r"(^|[\s='\x22,(\[])[^\s/:@='\x22]+:[^\s/@'\x22]+@([A-Za-z0-9\[][A-Za-z0-9.\-:\]]*)",
        "${1}[redacted]@${2}",
        &["@"],
    ),
    // JWTs (header.payload.signature, both first parts base64url JSON).
    Pattern::new(
        r"\beyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*",
        REDACTED,
        &["eyJ"],
    ),
    // Hugging Face, GitHub, GitLab, npm, PyPI, Slack, OpenAI/Anthropic, Stripe, AWS, Google.
    Pattern::new(r"\bhf_[A-Za-z0-9]{20,}", REDACTED, &["hf_"]),
    Pattern::new(
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",
        REDACTED,
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
    ),
    Pattern::new(
        r"\bgithub_pat_[A-Za-z0-9_]{30,}",
        REDACTED,
        &["github_pat_"],
    ),
    Pattern::new(r"\bglpat-[A-Za-z0-9_\-]{20,}", REDACTED, &["glpat-"]),
    Pattern::new(r"\bnpm_[A-Za-z0-9]{30,}", REDACTED, &["npm_"]),
    Pattern::new(
        r"\bpypi-(?:AgE[A-Za-z0-9_\-]{16,}|[A-Za-z0-9_\-]{40,})",
        REDACTED,
        &["pypi-"],
    ),
    Pattern::new(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", REDACTED, &["xox"]),
    // OpenAI and Anthropic keys are generated: mixed case and digits, not words
    // (`--model sk-learn-baseline-model-v2` stays).
    Pattern::new(
        r"\b(?P<s>sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,})",
        REDACTED,
        &["sk-"],
    )
    .only(|k| {
        let body = k.trim_start_matches("sk-");
        let mixed = body.bytes().any(|b| b.is_ascii_uppercase())
            && body.bytes().any(|b| b.is_ascii_lowercase())
            && body.bytes().any(|b| b.is_ascii_digit());
        // Or one long run of letters and digits, as no model or package name has.
        mixed
            || body.split(['-', '_']).any(|part| {
                part.len() >= 16
                    && part.bytes().any(|b| b.is_ascii_digit())
                    && part.bytes().any(|b| b.is_ascii_alphabetic())
            })
    }),
    Pattern::new(
        r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
        REDACTED,
        &["k_live_", "k_test_"],
    ),
    Pattern::new(
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
        REDACTED,
        &["AKIA", "ASIA", "AGPA", "AIDA", "AROA"],
    ),
    Pattern::new(r"\bAIza[0-9A-Za-z_\-]{35}", REDACTED, &["AIza"]),
    // Authorization headers.
    Pattern::new(
        r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/\-]{16,}=*",
        "${1}${2}[redacted]",
        &["bearer", "basic", "token"],
    )
    .any_case(),
];

/// `NAME=value` inside a string (e.g. `env HF_TOKEN=... python train.py`), a connection string
/// (`Server=db;User Id=sa;Password=x;`) or a URL query (`?sig=...&se=...`): the value ends at
/// white space, a quote, `;` or `&`.
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([A-Za-z_][A-Za-z0-9_.\-]*)=([^\s'\x22;&]+)(;?)").expect("valid regex")
});

/// `"key": "value"` inside a string (JSON or a Python dict in an argument).
static QUOTED_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(["'])([A-Za-z0-9_.\-]{1,64})(["']\s*:\s*)(["'])((?:[^"'\\]|\\.)*)(["'])"#)
        .expect("valid regex")
});

/// Whether `flag` (`--hf-token`, `-p`) names a secret that the next argument holds.
pub fn is_secret_flag(flag: &str) -> bool {
    flag == "-p" || (flag.starts_with('-') && name_secrecy(flag).is_some())
}

/// Whether `value`, the argument after `flag`, is the secret the flag names.
pub fn secret_follows(flag: &str, value: &str) -> bool {
    let mut words = vec![flag.to_string(), value.to_string()];
    args::redact_words(&mut words);
    words[1] != value
}

/// Remove secrets from free text (a command line, a URL, a value of any key).
pub fn scrub_text(text: &str) -> String {
    scrub(text, true)
}

/// [`scrub_text`]; `gated`: skip each regex where a cheap test shows it cannot change the text
/// (off only in the test that checks the gates change nothing).
fn scrub(text: &str, gated: bool) -> String {
    let mut s = text.to_string();
    for pat in &PATTERNS {
        if (!gated || pat.may_match(&s)) && pat.regex().is_match(&s) {
            s = match pat.only {
                None => pat.regex().replace_all(&s, pat.with).into_owned(),
                Some(only) => pat
                    .regex()
                    .replace_all(&s, |c: &regex::Captures| {
                        if c.name("s").is_some_and(|m| only(m.as_str())) {
                            let mut out = String::new();
                            c.expand(pat.with, &mut out);
                            out
                        } else {
                            c[0].to_string()
                        }
                    })
                    .into_owned(),
            };
        }
    }
    // Words: flag values, program conventions, headers, random-looking words.
    s = args::scrub_words(&s);
    // Each regex below needs its punctuation, and the first a secret-looking name; without
    // them it is neither compiled nor run.
    if (!gated || has_secret_assignment(&s)) && ASSIGNMENT.is_match(&s) {
        s = ASSIGNMENT
            .replace_all(&s, |c: &regex::Captures| {
                // In a connection string (`...;Pwd=x;`) PWD is a password, not the working dir.
                let pwd = &c[3] == ";" && c[1].eq_ignore_ascii_case("pwd");
                if (is_secret_name(&c[1]) || pwd)
                    && !harmless_value(&c[2], pwd || is_password_name(&c[1]))
                {
                    format!("{}={REDACTED}{}", &c[1], &c[3])
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
    }
    let quoted = |s: &str, also: char| s.contains(['\'', '"']) && s.contains(also);
    if (!gated || quoted(&s, ':')) && QUOTED_PAIR.is_match(&s) {
        s = QUOTED_PAIR
            .replace_all(&s, |c: &regex::Captures| {
                if is_secret_name(&c[2]) && !c[5].is_empty() && &c[5] != REDACTED {
                    format!("{}{}{}{}{REDACTED}{}", &c[1], &c[2], &c[3], &c[4], &c[6])
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
    }
    s
}

/// Whether some `name=` in `text` has a name [`ASSIGNMENT`] could redact after: any tail of the
/// name characters before an `=` that is secret, or `pwd`. Necessary for a change.
fn has_secret_assignment(text: &str) -> bool {
    let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(eq, &b)| {
        if b != b'=' {
            return false;
        }
        let start = bytes[..eq]
            .iter()
            .rposition(|&c| !name_char(c))
            .map_or(0, |i| i + 1);
        (start..eq).any(|i| {
            let tail = &text[i..eq];
            (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
                && (is_secret_name(tail) || tail.eq_ignore_ascii_case("pwd"))
        })
    })
}

/// Redact a whole document in place.
pub fn redact(value: &mut Value) {
    walk(value, false, false);
}

/// `secret`: the value is under a secret key; `password`: a password-like one (a path or a
/// number there is secret too).
fn walk(value: &mut Value, secret: bool, password: bool) {
    match value {
        Value::String(s) => {
            if secret {
                if !harmless_value(s, password) {
                    *s = REDACTED.into();
                }
            } else {
                let clean = scrub_text(s);
                if clean != *s {
                    *s = clean;
                }
            }
        }
        Value::Number(_) | Value::Bool(_) => {
            if secret {
                *value = Value::String(REDACTED.into());
            }
        }
        Value::Null => {}
        Value::Array(items) => {
            // The strings of an array are words of one command line: a flag's value is the
            // next string (`["--password", "x"]`), a program's conventions apply.
            if !secret && items.iter().any(Value::is_string) {
                let mut strings: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                args::redact_words(&mut strings);
                let mut clean = strings.into_iter();
                for item in items.iter_mut().filter(|i| i.is_string()) {
                    if let Some(c) = clean.next() {
                        *item = Value::String(c);
                    }
                }
            }
            for item in items.iter_mut() {
                walk(item, secret, password);
            }
        }
        Value::Object(map) => {
            // Kubernetes-style `{name: DB_PASSWORD, value: ...}` pairs: the name says the value is secret.
            let named_secret = ["name", "key", "Name", "Key"].iter().any(|k| {
                map.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(is_secret_name)
            });
            let map_names: BTreeMap<String, String> = ["name", "key", "Name", "Key"]
                .iter()
                .filter_map(|k| {
                    map.get(*k)
                        .and_then(Value::as_str)
                        .map(|v| (k.to_string(), v.to_string()))
                })
                .collect();
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                let key_secret = secret
                    || is_secret_name(&k)
                    || (named_secret && matches!(k.as_str(), "value" | "Value" | "val"));
                // Under a secret key, paths and short numbers stay unless the key (or a key
                // above it, or the named variable) is password-like.
                let key_password = password
                    || (key_secret && !is_secret_name(&k) && !named_secret)
                    || is_password_name(&k)
                    || (named_secret
                        && ["name", "key", "Name", "Key"]
                            .iter()
                            .any(|n| map_names.get(*n).is_some_and(|x| is_password_name(x))));
                walk(&mut v, key_secret, key_password);
                let mut key = scrub_text(&k);
                while map.contains_key(&key) {
                    key.push('\'');
                }
                map.insert(key, v);
            }
        }
    }
}

/// Redact the secrets a snapshot can carry (argv, the kept environment, exe and comm) in place,
/// with the same rules as [`redact`]; names and values of rank identities (MASTER_ADDR/PORT,
/// RANK, ...) are not secret-shaped and stay, so analysis reads the cleaned snapshot unchanged.
pub fn redact_snapshot(snap: &mut crate::model::snapshot::Snapshot) {
    use rayon::prelude::*;
    // Each process on its own (a thousand processes: the cores share the regex work).
    snap.processes.par_iter_mut().for_each(redact_process);
}

pub fn redact_process(p: &mut crate::model::snapshot::Process) {
    redact_argv(&mut p.argv);
    for (k, v) in p.env.iter_mut() {
        if is_secret_name(k) {
            if !harmless_value(v, is_password_name(k)) {
                *v = REDACTED.into();
            }
        } else {
            *v = scrub_text(v);
        }
    }
    if let Some(exe) = &mut p.exe {
        *exe = scrub_text(exe);
    }
    p.comm = scrub_text(&p.comm);
}

/// Redact an argument vector: secret-shaped arguments and the value after a secret flag.
pub fn redact_argv(argv: &mut [String]) {
    let mut v = Value::Array(argv.iter().cloned().map(Value::String).collect());
    redact(&mut v);
    if let Value::Array(items) = v {
        for (slot, item) in argv.iter_mut().zip(items) {
            if let Value::String(s) = item {
                *slot = s;
            }
        }
    }
}

/// Replace host names and user names by stable pseudonyms (`host-3fa2c1`, `user-9b01de`): the
/// same name gets the same pseudonym on every node, so `doctor merge` still matches
/// `MASTER_ADDR=node-a` against the report of node-a.
#[derive(Default)]
pub struct Anonymizer {
    names: BTreeMap<String, String>,
}

impl Anonymizer {
    pub fn new() -> Anonymizer {
        Anonymizer {
            names: BTreeMap::new(),
        }
    }

    fn pseudonym(kind: &str, name: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("ddp-doctor-anonymize:{name}").as_bytes());
        let hex: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
        format!("{kind}-{hex}")
    }

    /// A host name; its first label (`node-a` of `node-a.cluster.local`) is mapped too.
    pub fn host(&mut self, hostname: &str) {
        let hostname = hostname.trim();
        if hostname.len() < 2 || hostname == "localhost" {
            return;
        }
        let short = hostname.split('.').next().unwrap_or(hostname);
        let alias = Self::pseudonym("host", short);
        self.names.insert(hostname.to_string(), alias.clone());
        self.names.insert(short.to_string(), alias);
    }

    /// A user name; system accounts (`root`, `nobody`, ...) are kept, they say nothing about anyone.
    pub fn user(&mut self, user: &str) {
        let user = user.trim();
        if user.len() < 2
            || matches!(
                user,
                "root" | "nobody" | "daemon" | "bin" | "sys" | "www-data" | "systemd-network"
            )
        {
            return;
        }
        self.names
            .insert(user.to_string(), Self::pseudonym("user", user));
    }

    pub fn apply(&self, value: &mut Value) {
        if self.names.is_empty() {
            return;
        }
        // Longest first, so `node-a.cluster` is replaced before `node-a`.
        let mut names: Vec<(&String, &String)> = self.names.iter().collect();
        names.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        let alternation = names
            .iter()
            .map(|(k, _)| regex::escape(k))
            .collect::<Vec<_>>()
            .join("|");
        let Ok(re) = Regex::new(&format!(
            r"(^|[^A-Za-z0-9_\-])({alternation})($|[^A-Za-z0-9_\-])"
        )) else {
            return;
        };
        anon_walk(value, &re, &self.names);
    }
}

fn anon_text(s: &str, re: &Regex, names: &BTreeMap<String, String>) -> String {
    // Two passes: adjacent matches share a delimiter, which the regex consumes once.
    let mut out = s.to_string();
    for _ in 0..2 {
        out = re
            .replace_all(&out, |c: &regex::Captures| {
                format!("{}{}{}", &c[1], names[&c[2]], &c[3])
            })
            .into_owned();
    }
    out
}

fn anon_walk(value: &mut Value, re: &Regex, names: &BTreeMap<String, String>) {
    match value {
        Value::String(s) if re.is_match(s) => *s = anon_text(s, re, names),
        Value::Array(items) => items.iter_mut().for_each(|v| anon_walk(v, re, names)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                anon_walk(&mut v, re, names);
                let mut key = anon_text(&k, re, names);
                while map.contains_key(&key) {
                    key.push('\'');
                }
                map.insert(key, v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_names() {
        for n in [
            "HF_TOKEN",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "WANDB_API_KEY",
            "apiKey",
            "DB_PASSWORD",
            "MYSQL_PWD",
            "PGPASSWORD",
            "SMTP_PASSWD",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "NPM_AUTH",
            "session_cookie",
            "SSH_PRIVATE",
            "client_secret",
            "OPENAI_API_KEY",
            "HUGGING_FACE_HUB_TOKEN",
            "Authorization",
        ] {
            assert!(is_secret_name(n), "{n} should be secret");
        }
        for n in [
            "MASTER_ADDR",
            "MASTER_PORT",
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "MONKEY_PATCH",
            "TOKENIZERS_PARALLELISM",
            "KEYBOARD_LAYOUT",
            "HOCKEY",
            "PATH",
            "PWD",
            "OLDPWD",
            "torch",
            "master_port",
            "reserved_ports",
            "AUTHOR",
            "NCCL_SOCKET_IFNAME",
            "CUDA_VISIBLE_DEVICES",
            "pytorch_lightning",
        ] {
            assert!(!is_secret_name(n), "{n} should not be secret");
        }
    }

    #[test]
    fn token_shapes_in_text() {
        let cases = [
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCD",
            "AKIAIOSFODNN7EXAMPLE",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ];
        for c in cases {
            let text = format!("python train.py --x {c} --y 1");
            let out = scrub_text(&text);
            assert!(!out.contains(c), "{c} survived: {out}");
            assert!(out.contains("[redacted]"), "{out}");
            assert!(out.starts_with("python train.py --x "), "{out}");
            assert!(out.ends_with("--y 1"), "{out}");
        }
    }

    #[test]
    fn urls_flags_and_assignments() {
        assert_eq!(
            scrub_text("https://alice:s3cr3tP4ss@pypi.example.com/simple"),
            "https://[redacted]@pypi.example.com/simple"
        );
        assert_eq!(
            scrub_text("train.py --password hunter22 --epochs 3"),
            "train.py --password [redacted] --epochs 3"
        );
        assert_eq!(
            scrub_text("train.py --hf-token=abc123def"),
            "train.py --hf-token=[redacted]"
        );
        assert_eq!(
            scrub_text("env DB_PASSWORD=xyz MASTER_PORT=29500 python t.py"),
            "env DB_PASSWORD=[redacted] MASTER_PORT=29500 python t.py"
        );
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            scrub_text(&format!("key: {pem} done")),
            "key: [redacted] done"
        );
        assert_eq!(
            scrub_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk"),
            "[redacted]"
        );
    }

    #[test]
    fn flags_that_only_look_secret() {
        for s in [
            "python gen.py --max-tokens 512 --tokenizer gpt2 --max_new_tokens 64",
            "train.py --private --epochs 3",
            "train.py --keyboard us --monkey 1",
            "MAX_TOKENS=512 python t.py",
        ] {
            assert_eq!(scrub_text(s), s);
        }
        assert_eq!(
            scrub_text("t.py --wandb-key abcdef123 --hf_token=xyz --auth-token q1 --lr 0.1"),
            "t.py --wandb-key [redacted] --hf_token=[redacted] --auth-token [redacted] --lr 0.1"
        );
        assert_eq!(
            scrub_text("t.py --token --verbose"),
            "t.py --token --verbose"
        );
        let mut v = json!([
            "t.py",
            "--max-tokens",
            "512",
            "--wandb-key",
            "abc",
            "--private",
            "x.py"
        ]);
        redact(&mut v);
        assert_eq!(
            v,
            json!([
                "t.py",
                "--max-tokens",
                "512",
                "--wandb-key",
                REDACTED,
                "--private",
                "x.py"
            ])
        );
    }

    #[test]
    fn ordinary_values_stay() {
        for s in [
            "MASTER_ADDR=10.0.0.1",
            "/usr/bin/python3 /home/u/train.py --port 29500",
            "torch 2.15.0",
            "tcp://10.0.0.1:29500",
            "https://download.pytorch.org/whl/cu128",
            "task-1234567890abcdefghijklmn",
            "NVIDIA H200",
            "spawn_main(tracker_fd=5, pipe_handle=7)",
        ] {
            assert_eq!(scrub_text(s), s);
        }
    }

    #[test]
    fn document_walk() {
        let mut v = json!({
            "schema_version": 1,
            "env": {"HF_TOKEN": "plain-looking", "MASTER_PORT": "29500", "RANK": "0",
                    "PIP_INDEX_URL": "https://u:p@h.example/simple"},
            "argv": ["python", "t.py", "--token", "abc", "--lr", "0.1"],
            "nested": {"credentials": {"user": "bob", "pin": 1234}, "port": 29500},
        });
        redact(&mut v);
        assert_eq!(v["env"]["HF_TOKEN"], REDACTED);
        assert_eq!(v["env"]["MASTER_PORT"], "29500");
        assert_eq!(v["env"]["RANK"], "0");
        assert_eq!(
            v["env"]["PIP_INDEX_URL"],
            "https://[redacted]@h.example/simple"
        );
        assert_eq!(
            v["argv"],
            json!(["python", "t.py", "--token", REDACTED, "--lr", "0.1"])
        );
        assert_eq!(v["nested"]["credentials"]["user"], REDACTED);
        assert_eq!(v["nested"]["credentials"]["pin"], REDACTED);
        assert_eq!(v["nested"]["port"], 29500);
        let mut k8s =
            json!([{"name": "DB_PASSWORD", "value": "plain"}, {"name": "RANK", "value": "3"}]);
        redact(&mut k8s);
        assert_eq!(
            k8s,
            json!([{"name": "DB_PASSWORD", "value": REDACTED}, {"name": "RANK", "value": "3"}])
        );
        assert_eq!(v["schema_version"], 1);
    }

    /// The corpus of issue 11: every secret here must be gone after redaction.
    pub const CORPUS: &[(&str, &str)] = &[
        ("redis://:pw1Secret@host:6379/0", "pw1Secret"),
        ("http://user:p@ss2Secret@proxy:3128", "ss2Secret"),
        ("postgres://bob:pw3Secret@db/train", "pw3Secret"),
        ("{\"password\": \"pw4Secret\"}", "pw4Secret"),
        ("{'api_key': 'pw5Secret'}", "pw5Secret"),
        (
            "Server=db;User Id=sa;Password=pw6Secret;Database=x",
            "pw6Secret",
        ),
        ("Server=db;Uid=sa;Pwd=pw7Secret;", "pw7Secret"),
        (
            "https://acct.blob.core.windows.net/c/f?sv=2020&sig=pw8Secret%3D&se=2030",
            "pw8Secret",
        ),
        (
            "https://s3.example/b/k?X-Amz-Credential=AK%2Fx&X-Amz-Signature=pw9Secret",
            "pw9Secret",
        ),
    ];

    #[test]
    fn gates_change_nothing() {
        let mut texts: Vec<String> = CORPUS.iter().map(|(t, _)| t.to_string()).collect();
        let parts = [
            "--token",
            "-p",
            "--password=",
            "x",
            "TOKEN=",
            "a.b-API_KEY=",
            "Pwd=",
            ";",
            "=",
            " ",
            "\u{2003}",
            "'",
            "\"",
            ":",
            "--",
            "-",
            "é",
            "secret",
            "--max-tokens",
            "512",
            "HF_TOKEN",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123",
            "https://u:p@h/",
            "'--pw', 'v'",
            "{\"api_key\": \"v\"}",
            "Bearer abcdefghijklmnop0123",
            "pwd=x",
            "MY_PWD=y",
        ];
        let mut seed = 11u64;
        for _ in 0..3000 {
            let mut t = String::new();
            for _ in 0..6 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                t.push_str(parts[(seed >> 33) as usize % parts.len()]);
            }
            texts.push(t);
        }
        for t in &texts {
            assert_eq!(scrub(t, true), scrub(t, false), "{t:?}");
        }
    }

    #[test]
    fn needles_are_in_every_match() {
        let mut texts: Vec<&str> = CORPUS.iter().map(|(t, _)| *t).collect();
        texts.extend([
            "Authorization: BeArEr abcdefghijklmnop0123",
            "to\u{212A}en abcdefghijklmnop0123",
            "rk_test_0123456789abcdefXYZ sk_live_0123456789abcdefXYZ gho_0123456789012345678901234567890",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
            "AIzaSyA0123456789012345678901234567890 ASIAABCDEFGHIJKLMNOP npm_012345678901234567890123456789",
            "pypi-AgEIcHlwaS5vcmcCJGE0ZjQ3ZWI2LTk3ZTAtNDk glpat-0123456789abcdefghij",
        ]);
        for text in texts {
            for pat in &PATTERNS {
                if pat.regex().is_match(text) {
                    assert!(
                        pat.may_match(text),
                        "{} matches {text:?} without a needle",
                        pat.re
                    );
                }
            }
        }
    }

    #[test]
    fn corpus_in_text_and_argv() {
        for (text, secret) in CORPUS {
            let out = scrub_text(text);
            assert!(!out.contains(secret), "{secret} survived: {out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        let mut argv: Vec<String> = [
            "python",
            "t.py",
            "-p",
            "shortPW1",
            "--pw",
            "shortPW2",
            "--password",
            "longPW3",
            "--token",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "-p",
            "29500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        redact_argv(&mut argv);
        let joined = argv.join(" ");
        for s in ["shortPW1", "shortPW2", "longPW3", "ghp_16C7"] {
            assert!(!joined.contains(s), "{s} survived: {joined}");
        }
        assert!(
            joined.ends_with("-p 29500"),
            "a port after -p stays: {joined}"
        );
        assert_eq!(
            scrub_text("argv ['t.py', '--password', 'longPW3', '--lr', '0.1']"),
            "argv ['t.py', '--password', '[redacted]', '--lr', '0.1']"
        );
        assert_eq!(
            scrub_text("mysql -pshortPW1 --pw=shortPW2 -p 3306"),
            "mysql -p[redacted] --pw=[redacted] -p 3306"
        );
    }

    #[test]
    fn anonymize_consistently() {
        let mut a = Anonymizer::new();
        a.host("node-a.cluster.local");
        a.user("alice");
        let mut v = json!({"hostname": "node-a", "fqdn": "node-a.cluster.local",
                           "cmd": "/home/alice/venv/bin/python train.py", "MASTER_ADDR": "node-a",
                           "other": "node-ab alice2"});
        a.apply(&mut v);
        let host = v["hostname"].as_str().unwrap().to_string();
        assert!(host.starts_with("host-"), "{v}");
        assert_eq!(v["MASTER_ADDR"], host);
        assert_eq!(v["fqdn"], host);
        assert!(v["cmd"].as_str().unwrap().starts_with("/home/user-"), "{v}");
        assert_eq!(v["other"], "node-ab alice2");
    }
}
