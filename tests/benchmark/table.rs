//! The table both benchmarks print and the JSON file they save: one place for the layout, the
//! PASS/FAIL verdicts and the results path, so `make bench`'s two reports read alike.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// One line of the table: a section title (no value, no verdict) or a measurement.
struct Row {
    label: String,
    value: String,
    target: String,
    result: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    results: serde_json::Map<String, Value>,
    /// What was measured with what (binaries, machine); saved under `meta`.
    pub meta: serde_json::Map<String, Value>,
}

impl Table {
    pub fn section(&mut self, title: &str) {
        self.rows.push(Row {
            label: title.to_string(),
            value: String::new(),
            target: String::new(),
            result: None,
        });
    }

    pub fn row(&mut self, label: &str, value: String, target: &str, result: Option<bool>) {
        self.rows.push(Row {
            label: format!("  {label}"),
            value,
            target: target.to_string(),
            result,
        });
    }

    pub fn record(&mut self, name: &str, values: Value) {
        self.results.insert(name.to_string(), values);
    }

    /// Prints the table and a total line naming `what` was timed, then saves the results as
    /// `target/bench/<file>`.
    pub fn print_and_save(&self, what: &str, file: &str, elapsed: Duration) {
        let is_title = |row: &Row| row.value.is_empty() && row.result.is_none();
        // Section titles stand on their own line and do not widen the columns.
        let measures = || self.rows.iter().filter(|r| !is_title(r));
        let width = measures().map(|r| r.label.len()).max().unwrap_or(0);
        let value_width = measures().map(|r| r.value.len()).max().unwrap_or(0);
        let target_width = measures().map(|r| r.target.len()).max().unwrap_or(0);
        println!();
        let mut failed = Vec::new();
        for row in &self.rows {
            if is_title(row) {
                println!("{}", row.label);
                continue;
            }
            let verdict = match row.result {
                Some(true) => "PASS",
                Some(false) => {
                    failed.push(row.label.trim().to_string());
                    "FAIL"
                }
                None => "",
            };
            println!(
                "{:<width$}  {:<value_width$}  {:<target_width$}  {verdict}",
                row.label, row.value, row.target
            );
        }
        println!();
        println!(
            "total {what} time {:.0} s; {} target(s) missed{}",
            elapsed.as_secs_f64(),
            failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(": {}", failed.join("; "))
            }
        );
        let mut all = self.results.clone();
        all.insert("meta".into(), Value::Object(self.meta.clone()));
        all.insert("failed".into(), json!(failed));
        let path = results_path(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        let text = serde_json::to_string_pretty(&Value::Object(all)).expect("results JSON");
        std::fs::write(&path, text + "\n")
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("results: {}", path.display());
    }
}

fn results_path(file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench").join(file)
}
