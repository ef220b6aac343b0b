//! The training progress bar (indicatif), drawn only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use standpoint::label::output::Counts;
use standpoint::label::pipeline::Position;
use standpoint::train::checkpoint::EpochRecord;
use standpoint::train::{StepInfo, TrainObserver};

/// Draws a bar with loss, learning rate, examples/s and ETA; epoch summaries and notes go
/// to stderr as plain lines, so logs stay readable when stderr is a file.
pub struct TrainProgress {
    bar: ProgressBar,
    drawn: bool,
    /// When the last plain progress line was written (logs get one every 30 s).
    last_line: std::time::Instant,
}

/// How often a log (stderr not a terminal) gets a progress line.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

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
        TrainProgress {
            bar,
            drawn,
            last_line: std::time::Instant::now(),
        }
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
        let message = format!(
            "epoch {} loss {:.4} lr {:.2e} {:.1} ex/s",
            info.epoch, info.loss, info.learning_rate, info.examples_per_second
        );
        if !self.drawn && self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = std::time::Instant::now();
            let total = self.bar.length().unwrap_or(0);
            eprintln!("step {}/{total} {message}", info.step);
        }
        self.bar.set_message(message);
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

/// The labelling progress: documents done, sentences per second and, when the number of
/// documents is known, an ETA; drawn only on a terminal.
pub struct LabelProgress {
    bar: ProgressBar,
    started: std::time::Instant,
    /// Sentences already done before this process started (a resumed run).
    before: usize,
}

impl LabelProgress {
    /// `total`: the number of documents, when known; `before`: sentences already labelled.
    pub fn new(from: Position, total: Option<u64>, before: usize) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = if total.is_some() {
            "{elapsed_precise} [{bar:30}] {pos}/{len} documents, {msg}, ETA {eta}"
        } else {
            "{spinner} {elapsed_precise} {pos} documents, {msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(from.document as u64);
        bar.reset_eta();
        LabelProgress {
            bar,
            started: std::time::Instant::now(),
            before,
        }
    }

    pub fn update(&mut self, position: Position, counts: Counts) {
        let rate = counts.sentences.saturating_sub(self.before) as f64
            / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position(position.document as u64);
        self.bar.set_message(format!(
            "{} sentences, {} rows, {rate:.1} sentences/s",
            counts.sentences, counts.rows
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The number of documents in `inputs` (text files, or records counted by
/// [`standpoint::data::count_records`]); `None` for standard input or a file those readers
/// refuse (the labelling run reports that error itself). Only for the progress bar.
pub fn count_documents(
    inputs: &[String],
    format: Option<standpoint::label::documents::InputFormat>,
) -> Option<u64> {
    use standpoint::label::documents::InputFormat;
    let mut total = 0u64;
    for input in inputs {
        if input == "-" {
            return None;
        }
        let path = std::path::Path::new(input);
        match format.unwrap_or_else(|| InputFormat::of_path(path)) {
            InputFormat::Text if path.is_dir() => {
                let files = standpoint::label::documents::input_files(
                    std::slice::from_ref(input),
                    Some(InputFormat::Text),
                );
                total += files.map_or(0, |f| f.len() as u64);
            }
            InputFormat::Text => total += 1,
            InputFormat::Records(format) => {
                total += standpoint::data::count_records(path, format).ok()?;
            }
        }
    }
    Some(total)
}
