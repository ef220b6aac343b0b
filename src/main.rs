//! `standpoint`: the command-line front end. Every command is a thin call into the library.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use standpoint::hub::ResolveOptions;
use standpoint::output::Sink;
use standpoint::records::{JsonlQueries, QueryRecord};
use standpoint::{Classifier, ClassifierOptions, Prediction, Query, parse_device, parse_dtype};

#[derive(Parser)]
#[command(
    name = "standpoint",
    version,
    about = "Stance toward actors, and sentiment, for every sentence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify sentences given on the command line or as JSONL rows; prints one JSON line per input.
    Classify(ClassifyArgs),
    /// Describe a model: architecture, heads, labels, parameter count.
    Info(InfoArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// Model folder, or hub id `org/name[@revision]`.
    #[arg(long, short)]
    model: String,
    /// Hub revision (branch, tag or commit) when the id carries none.
    #[arg(long)]
    revision: Option<String>,
    /// Use only local files and the hub cache (also: HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

impl ModelArgs {
    fn load(&self, batch_size: usize, max_length: Option<usize>) -> Result<Classifier> {
        let options = ClassifierOptions {
            device: parse_device(&self.device)?,
            dtype: Some(parse_dtype(&self.dtype)?),
            batch_size,
            max_length,
            resolve: ResolveOptions {
                offline: self.offline,
                revision: self.revision.clone(),
                cache_dir: None,
            },
        };
        Ok(Classifier::load(&self.model, &options)?)
    }
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Actor the stance is judged against (applies to every TEXT).
    #[arg(long, short)]
    target: Option<String>,
    /// JSONL file of {"text", "target"?, "id"?} rows, or - for stdin.
    #[arg(long, short, conflicts_with_all = ["texts", "target"])]
    input: Option<String>,
    /// Write here (atomically: a temporary file renamed at the end) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Inputs per encoder pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Token limit per input (default: the model's).
    #[arg(long)]
    max_length: Option<usize>,
    /// Sentences to classify.
    #[arg(required_unless_present = "input")]
    texts: Vec<String>,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// One output line of `classify`.
#[derive(Serialize)]
struct ClassifyRow<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    predictions: &'a Prediction,
}

/// Rows classified per call, so memory stays bounded for any input size.
const CHUNK: usize = 256;

fn classify(args: &ClassifyArgs) -> Result<()> {
    let classifier = args.model.load(args.batch_size, args.max_length)?;
    let mut out = Sink::open(args.output.as_deref())?;
    match &args.input {
        None => {
            let records: Vec<QueryRecord> = args
                .texts
                .iter()
                .map(|text| QueryRecord {
                    text: text.clone(),
                    target: args.target.clone(),
                    id: None,
                    line: 0,
                })
                .collect();
            write_predictions(&classifier, &records, "argument", &mut out)?;
        }
        Some(source) => {
            let (reader, name): (Box<dyn BufRead>, String) = if source == "-" {
                (Box::new(std::io::stdin().lock()), "<stdin>".into())
            } else {
                let file = std::fs::File::open(source)
                    .with_context(|| format!("{source}: cannot open"))?;
                (Box::new(BufReader::new(file)), source.clone())
            };
            let mut chunk = Vec::with_capacity(CHUNK);
            for record in JsonlQueries::new(reader, &name) {
                chunk.push(record?);
                if chunk.len() == CHUNK {
                    write_predictions(&classifier, &chunk, &name, &mut out)?;
                    chunk.clear();
                }
            }
            write_predictions(&classifier, &chunk, &name, &mut out)?;
        }
    }
    Ok(out.finish()?)
}

/// Classifies `records` and writes one JSON line each, in input order;
/// `source` names where they came from in error messages.
fn write_predictions(
    classifier: &Classifier,
    records: &[QueryRecord],
    source: &str,
    out: &mut Sink,
) -> Result<()> {
    let queries: Vec<Query> = records
        .iter()
        .map(|r| Query {
            text: &r.text,
            target: r.target.as_deref(),
        })
        .collect();
    let predictions = classifier.classify(&queries).map_err(|e| match &e {
        standpoint::Error::InvalidInput { index, reason } => {
            let line = records[*index].line;
            let at = if line > 0 { line } else { index + 1 };
            anyhow::anyhow!("{source}:{at}: {reason}")
        }
        _ => e.into(),
    })?;
    for (record, prediction) in records.iter().zip(&predictions) {
        let row = ClassifyRow {
            id: record.id.as_ref(),
            text: &record.text,
            target: record.target.as_deref(),
            predictions: prediction,
        };
        serde_json::to_writer(&mut *out, &row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn info(args: &InfoArgs) -> Result<()> {
    let classifier = args.model.load(1, None)?;
    let info = classifier.info();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &info)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "source:        {}", info.source)?;
    if let Some(name) = &info.name {
        let version = info
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        writeln!(out, "name:          {name}{version}")?;
    }
    writeln!(out, "architecture:  {}", info.architecture)?;
    writeln!(
        out,
        "encoder:       {} layers, hidden {}, {} attention heads, vocabulary {}",
        info.layers, info.hidden_size, info.attention_heads, info.vocab_size
    )?;
    writeln!(out, "max length:    {} tokens", info.max_length)?;
    writeln!(out, "parameters:    {}", info.parameters)?;
    writeln!(
        out,
        "dtype:         stored {}, compute {}",
        info.stored_dtype.as_deref().unwrap_or("?"),
        info.compute_dtype
    )?;
    if info.heads.is_empty() {
        writeln!(out, "heads:         none (bare encoder)")?;
    }
    for head in &info.heads {
        writeln!(
            out,
            "head {:?}: reads {:?}, pooling {:?}, labels: {}",
            head.name,
            head.input,
            head.pooling,
            head.labels.join(", ")
        )?;
    }
    if !info.unused_tensors.is_empty() {
        writeln!(
            out,
            "unused tensors ({}): {}",
            info.unused_tensors.len(),
            info.unused_tensors.join(", ")
        )?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Classify(args) => classify(args),
        Command::Info(args) => info(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
