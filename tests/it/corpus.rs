//! Robustness on real-world models: the OMG MIWG reference models and their bpmn.io exports
//! (`../shared/corpus/miwg/`), as they are and mutated thousands of times.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Command;

use crate::support::{files_with_ext, shared_dir};

fn corpus_files() -> Vec<PathBuf> {
    let root = shared_dir().join("corpus/miwg");
    let mut files = files_with_ext(&root.join("reference"), "bpmn");
    files.extend(files_with_ext(&root.join("bpmn.io"), "bpmn"));
    assert_eq!(files.len(), 64, "the MIWG corpus has 64 files");
    files
}

#[test]
fn validate_reads_every_corpus_file_without_crashing() {
    let files = corpus_files();
    let output = Command::new(env!("CARGO_BIN_EXE_reglament")).arg("validate").args(&files).output().expect("run");
    // 1: the corpus has errors (most models are descriptive, not executable); never a crash (101).
    assert_eq!(output.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    for line in stdout.lines() {
        let mut parts = line.splitn(4, ':');
        let (file, l, c) = (parts.next(), parts.next(), parts.next());
        assert!(file.is_some_and(|f| f.ends_with(".bpmn")), "bad line: {line}");
        assert!(l.and_then(|l| l.parse::<u32>().ok()).is_some_and(|l| l > 0), "bad line number: {line}");
        assert!(c.and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| c > 0), "bad column: {line}");
    }
    // Each file on its own, as a user would run it: exit 0 or 1, never a panic.
    for file in &files {
        let code =
            Command::new(env!("CARGO_BIN_EXE_reglament")).arg("validate").arg(file).status().expect("run").code();
        assert!(matches!(code, Some(0 | 1)), "{}: exit {code:?}", file.display());
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SNIPPETS: &[&[u8]] = &[
    b"<",
    b">",
    b"\"",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b"</bpmn:process>",
    b"<bpmn:task id=\"x\">",
    b"<!DOCTYPE a [<!ENTITY e \"e\">]>",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"=",
    b"=a +",
    b"\xff\xfe",
    b"\xd0",
    b"xmlns:zeebe=\"http://camunda.org/schema/zeebe/1.0\"",
    b"sourceRef=\"nowhere\"",
    b"attachedToRef=\"\"",
    b"default=\"\"",
    b"isExecutable=\"true\"",
    b"<bpmn:timeCycle>R/PT0S</bpmn:timeCycle>",
    b"<zeebe:loopCharacteristics inputCollection=\"=\"/>",
];

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut data = original.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len().max(1);
        match rng.below(7) {
            0 => {
                let at = rng.below(len);
                if at < data.len() {
                    data[at] ^= 1 << rng.below(8);
                }
            }
            1 => data.truncate(rng.below(len)),
            2 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let (a, b) = (a.min(b), a.max(b).min(data.len()));
                data.drain(a..b.min(a + 400));
            }
            3 => {
                let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                let at = rng.below(len).min(data.len());
                data.splice(at..at, snippet.iter().copied());
            }
            4 => {
                let (a, b) = (rng.below(len).min(data.len()), rng.below(len).min(data.len()));
                let (a, b) = (a.min(b), a.max(b));
                let chunk: Vec<u8> = data[a..b.min(a + 2000)].to_vec();
                let at = rng.below(len).min(data.len());
                data.splice(at..at, chunk);
            }
            5 => {
                // Swap the values of two attributes named id/sourceRef/targetRef etc. by
                // duplicating a quoted value elsewhere.
                let quotes: Vec<usize> = data.iter().enumerate().filter(|(_, b)| **b == b'"').map(|(i, _)| i).collect();
                if quotes.len() > 4 {
                    let i = rng.below(quotes.len() / 2) * 2;
                    let j = rng.below(quotes.len() / 2) * 2;
                    if i + 1 < quotes.len() && j + 1 < quotes.len() {
                        let value = data[quotes[i] + 1..quotes[i + 1]].to_vec();
                        let (s, e) = (quotes[j] + 1, quotes[j + 1]);
                        if s <= e {
                            data.splice(s..e, value);
                        }
                    }
                }
            }
            _ => {
                let at = rng.below(len).min(data.len());
                let byte = (rng.next() & 0xff) as u8;
                data.insert(at, byte);
            }
        }
    }
    data
}

#[test]
fn thousands_of_mutated_corpus_files_never_panic() {
    let files = corpus_files();
    let mut rng = Rng(0x005E_ED0F_2026);
    let mut cases = 0;
    let deployed = Default::default();
    for file in &files {
        let original = std::fs::read(file).expect("read corpus file");
        for _ in 0..50 {
            let mutated = mutate(&mut rng, &original);
            let result = catch_unwind(AssertUnwindSafe(|| reglament_engine::check(&mutated, &deployed)));
            if result.is_err() {
                let path = std::env::temp_dir().join("reglament-panic.bpmn");
                std::fs::write(&path, &mutated).expect("save the failing input");
                panic!("the parser panicked on a mutation of {}; input saved to {}", file.display(), path.display());
            }
            cases += 1;
        }
    }
    assert!(cases >= 3000, "only {cases} cases ran");
}
