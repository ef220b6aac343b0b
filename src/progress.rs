//! The training progress bar (indicatif), drawn only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use standpoint::train::checkpoint::EpochRecord;
use standpoint::train::{StepInfo, TrainObserver};

/// Draws a bar with loss, learning rate, examples/s and ETA; epoch summaries and notes go
/// to stderr as plain lines, so logs stay readable when stderr is a file.
pub struct TrainProgress {
    bar: ProgressBar,
    drawn: bool,
}

impl TrainProgress {
    pub fn new() -> Self {
        let drawn = std::io::stderr().is_terminal();
        let target = if drawn {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] step {pos}/{len} {msg} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        TrainProgress { bar, drawn }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// A line above the bar, or a plain stderr line when no bar is drawn.
    fn line(&self, text: &str) {
        if self.drawn {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

impl TrainObserver for TrainProgress {
    fn start(&mut self, step: usize, total_steps: usize) {
        self.bar.set_length(total_steps as u64);
        self.bar.set_position(step as u64);
        self.bar.reset_eta();
    }

    fn step(&mut self, info: &StepInfo) {
        self.bar.set_position(info.step as u64);
        self.bar.set_message(format!(
            "epoch {} loss {:.4} lr {:.2e} {:.1} ex/s",
            info.epoch, info.loss, info.learning_rate, info.examples_per_second
        ));
    }

    fn epoch(&mut self, record: &EpochRecord) {
        let dev = record
            .selection
            .map(|s| {
                format!(
                    ", dev {s:.4}{}",
                    if record.best { " (best, saved)" } else { "" }
                )
            })
            .unwrap_or_default();
        self.line(&format!(
            "epoch {}: train loss {:.4}, {:.1} ex/s{dev}",
            record.epoch, record.train_loss, record.examples_per_second
        ));
        if let Some(report) = &record.dev {
            self.line(&report.render());
        }
    }

    fn note(&mut self, message: &str) {
        self.line(message);
    }
}

/// The labelling progress: documents done and sentences per second, drawn only on a terminal.
pub struct LabelProgress {
    bar: ProgressBar,
    started: std::time::Instant,
    first: usize,
}

impl LabelProgress {
    pub fn new(from: standpoint::label::pipeline::Position) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        bar.set_position(from.document as u64);
        LabelProgress {
            bar,
            started: std::time::Instant::now(),
            first: 0,
        }
    }

    pub fn update(
        &mut self,
        position: standpoint::label::pipeline::Position,
        counts: standpoint::label::output::Counts,
    ) {
        if self.first == 0 {
            self.first = counts.sentences.max(1);
        }
        let rate = counts.sentences.saturating_sub(self.first) as f64
            / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "document {}, {} sentences, {} rows, {rate:.1} sentences/s",
            position.document, counts.sentences, counts.rows
        ));
        self.bar.tick();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
