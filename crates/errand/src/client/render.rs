//! How the client commands show records: a summary, a table, and the live view of `watch`.

use errand_core::{StepStatus, TaskRecord, TaskState};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

fn step_mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "·",
        StepStatus::Running => "▶",
        StepStatus::Success => "✔",
        StepStatus::Failed => "✖",
        StepStatus::Skipped => "↷",
    }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".into())
}

/// A progress bar: `[#######.............]  7/20  message`.
pub fn bar(record: &TaskRecord) -> String {
    const WIDTH: usize = 30;
    let Some(p) = &record.progress else {
        return String::new();
    };
    let filled = if p.total == 0 {
        0
    } else {
        ((p.current.min(p.total) as f64 / p.total as f64) * WIDTH as f64).round() as usize
    };
    format!(
        "[{}{}] {}/{}{}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        p.current,
        p.total,
        p.message
            .as_deref()
            .map(|m| format!("  {m}"))
            .unwrap_or_default()
    )
}

/// A multi-line summary of a record.
pub fn record(r: &TaskRecord) -> String {
    let mut out = String::new();
    let owner = r.owner.user_id.as_deref().unwrap_or("-");
    let tenant = r
        .owner
        .tenant
        .as_deref()
        .map(|t| format!(" (tenant {t})"))
        .unwrap_or_default();
    let _ = writeln!(out, "task     {}  {}", r.id, r.name);
    let _ = writeln!(
        out,
        "status   {}  attempt {}/{}",
        r.status, r.attempt, r.max_attempts
    );
    let _ = writeln!(out, "owner    {owner}{tenant}");
    if let Some(c) = &r.correlation_id {
        let _ = writeln!(out, "corr.    {c}");
    }
    let _ = writeln!(out, "created  {}", time(Some(r.created_at)));
    if r.started_at.is_some() {
        let _ = writeln!(out, "started  {}", time(r.started_at));
    }
    if r.completed_at.is_some() {
        let _ = writeln!(out, "finished {}", time(r.completed_at));
    }
    if r.status == TaskState::Retrying {
        let _ = writeln!(out, "next try {}", time(r.next_attempt_at));
    }
    if r.progress.is_some() {
        let _ = writeln!(out, "progress {}", bar(r));
    }
    for s in &r.steps {
        let err = s
            .error
            .as_deref()
            .map(|e| format!("  — {e}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {} {}{err}", step_mark(s.status), s.name);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(
            out,
            "error    {} ({}{})",
            e.message,
            e.kind,
            if e.retryable { ", retryable" } else { "" }
        );
        if let Some(d) = &e.details {
            let _ = writeln!(out, "details  {d}");
        }
    }
    if let Some(result) = &r.result {
        let _ = writeln!(out, "result   {}", result.get());
    }
    for a in &r.history {
        let by = a.by.user_id.as_deref().unwrap_or("-");
        let tenant =
            a.by.tenant
                .as_deref()
                .map(|t| format!(" (tenant {t})"))
                .unwrap_or_default();
        let at = time(Some(a.at));
        let _ = writeln!(
            out,
            "history  {} by {by}{tenant} at {at}",
            a.outcome.as_str()
        );
    }
    out
}

/// One line per record: id, status, name, attempt, created.
pub fn table(records: &[TaskRecord]) -> String {
    let mut out = String::new();
    if records.is_empty() {
        out.push_str("no tasks\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<36}  {:<9}  {:<24}  {:>7}  created",
        "id", "status", "name", "attempt"
    );
    for r in records {
        let _ = writeln!(
            out,
            "{:<36}  {:<9}  {:<24}  {:>3}/{:<3}  {}",
            r.id,
            r.status.as_str(),
            r.name,
            r.attempt,
            r.max_attempts,
            time(Some(r.created_at))
        );
    }
    out
}

/// The live view of `watch`: redrawn in place on a terminal, one line per change otherwise.
pub struct Screen {
    json: bool,
    tty: bool,
    drawn_lines: usize,
}

impl Screen {
    /// A view on stderr (stdout stays for `--json` lines).
    pub fn new(json: bool) -> Self {
        Self {
            json,
            tty: !json && std::io::stderr().is_terminal(),
            drawn_lines: 0,
        }
    }

    /// Shows a new state of the record.
    pub fn show(&mut self, r: &TaskRecord) -> std::io::Result<()> {
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, r)?;
            return writeln!(out);
        }
        let mut err = std::io::stderr().lock();
        if !self.tty {
            let steps: Vec<String> = r
                .steps
                .iter()
                .map(|s| format!("{}{}", step_mark(s.status), s.name))
                .collect();
            return writeln!(
                err,
                "{:<9} {} {}",
                r.status.as_str(),
                bar(r),
                steps.join(" ")
            );
        }
        let mut frame = format!(
            "{}  {}  attempt {}/{}\n",
            r.id, r.status, r.attempt, r.max_attempts
        );
        if r.progress.is_some() {
            frame.push_str(&bar(r));
            frame.push('\n');
        }
        for s in &r.steps {
            let err = s
                .error
                .as_deref()
                .map(|e| format!("  — {e}"))
                .unwrap_or_default();
            let _ = writeln!(frame, "  {} {}{err}", step_mark(s.status), s.name);
        }
        // Move up over the previous frame and clear it.
        for _ in 0..self.drawn_lines {
            write!(err, "\x1b[1A\x1b[2K")?;
        }
        write!(err, "{frame}")?;
        self.drawn_lines = frame.lines().count();
        err.flush()
    }

    /// Prints the final outcome.
    pub fn finish(&mut self, r: &TaskRecord) -> std::io::Result<()> {
        if self.json {
            return Ok(());
        }
        let mut err = std::io::stderr().lock();
        match (&r.error, r.status) {
            (_, TaskState::Success) => writeln!(
                err,
                "success{}",
                r.result
                    .as_ref()
                    .map(|v| format!(": {}", v.get()))
                    .unwrap_or_default()
            ),
            (Some(e), s) => writeln!(err, "{s}: {} ({})", e.message, e.kind),
            (None, s) => writeln!(err, "{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskRecord {
        serde_json::from_value(serde_json::json!({
            "id": "01a20125-0533-76dd-9437-fb907c99cf11",
            "name": "ingest_document", "queue": "default", "status": "failed",
            "owner": {"user_id": "alice", "tenant": null},
            "created_at": "2026-11-22T02:45:33Z", "updated_at": "2026-11-22T02:45:34Z",
            "attempt": 1, "max_attempts": 3, "timeout_ms": 1000,
            "progress": {"current": 1, "total": 4, "message": "chunk"},
            "steps": [
                {"name": "chunk", "status": "success"},
                {"name": "embed", "status": "failed", "error": "no terms"},
                {"name": "index", "status": "skipped"}
            ],
            "error": {"message": "no terms", "kind": "no_terms", "retryable": false},
            "history": [{"action": "cancel", "outcome": "cancel_requested",
                         "by": {"user_id": "root", "tenant": "ops"}, "at": "2026-11-22T02:45:34Z"}]
        }))
        .expect("a record")
    }

    #[test]
    fn summary_shows_steps_error_and_progress() {
        let text = record(&sample());
        assert!(text.contains("failed"));
        assert!(text.contains("✖ embed  — no terms"));
        assert!(text.contains("↷ index"));
        assert!(text.contains("[########......................] 1/4  chunk"));
        assert!(text.contains("owner    alice"));
        assert!(text.contains(
            "history  cancel_requested by root (tenant ops) at 2026-11-22T02:45:34.000Z"
        ));
    }

    #[test]
    fn table_lists_each_record() {
        let t = table(&[sample()]);
        assert_eq!(t.lines().count(), 2);
        assert!(t.contains("ingest_document"));
        assert_eq!(table(&[]), "no tasks\n");
    }
}
