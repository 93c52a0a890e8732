//! What a static finding is: the rule it breaks, where, why, and how to fix it.

use serde::Serialize;

pub use crate::model::finding::{Rule, Severity};

/// Other evidence a finding cites: a line elsewhere in the same file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Related {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
}

/// One static finding. Lines and columns are 1-based; columns count characters. Serialised in
/// the one finding shape (`model::finding::FindingDoc`, with `location`) plus `related`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Rule,
    pub severity: Severity,
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    /// Help text: how to fix it, with the guarded form where one applies.
    pub fix: String,
    pub related: Vec<Related>,
}

impl Serialize for Diagnostic {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use crate::model::finding::{FindingDoc, Location};
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(flatten)]
            doc: FindingDoc<'a>,
            related: &'a [Related],
        }
        let mut doc = FindingDoc::new(self.code, &self.message, &self.fix);
        doc.severity = self.severity;
        doc.location = Some(Location {
            path: self.path.clone(),
            line: self.line,
            column: self.column,
            end_line: self.end_line,
            end_column: self.end_column,
        });
        View {
            doc,
            related: &self.related,
        }
        .serialize(ser)
    }
}

/// A static rule: its code (name, default severity and summary hang off it) and the long
/// description SARIF carries.
pub struct StaticRule {
    pub code: Rule,
    pub full: &'static str,
}

pub const S001: StaticRule = StaticRule {
    code: Rule::S001,
    full: "A distributed launch or process-group init (fabric.launch(), a multi-process Trainer.fit(), \
           init_process_group, TCPStore, torch.multiprocessing.spawn, Accelerator(), deepspeed.initialize) \
           runs when the file is imported, outside `if __name__ == \"__main__\":`. Every process that \
           re-imports the file launches again. An error when S002 holds for the same program.",
};

pub const S002: StaticRule = StaticRule {
    code: Rule::S002,
    full: "The program starts spawn or forkserver children (an explicit context, set_start_method, or the \
           platform default with DataLoader num_workers > 0). Such children re-import the main file as \
           `__mp_main__`, re-run its module-level launch, and bind the rendezvous port a second time: \
           EADDRINUSE, or a duplicate rank that hangs.",
};

pub const S003: StaticRule = StaticRule {
    code: Rule::S003,
    full: "CUDA calls (torch.cuda.*, .cuda(), .to(\"cuda\"), device=\"cuda\") run when the file is imported, \
           so every spawn or forkserver child repeats them: extra CUDA contexts, memory on the wrong GPU, \
           or a crash in DataLoader workers.",
};

pub const S900: StaticRule = StaticRule {
    code: Rule::S900,
    full: "The Python file has a syntax error; it was not analysed. Or part of it is nested more than 400 \
           levels deep and was not analysed, so a launch there would be missed. Other files are still \
           scanned.",
};

pub const RULES: [&StaticRule; 4] = [&S001, &S002, &S003, &S900];
