//! `standpoint`: the command-line front end. Every command is a thin call into the library.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use standpoint::data::jsonl::{JsonlQueries, QueryRecord};
use standpoint::eval::metrics::PerTargetReport;
use standpoint::eval::{EvalFields, calibrate_files, evaluate_files, evaluate_files_per_target};
use standpoint::hub::ResolveOptions;
use standpoint::label::actors::ActorSet;
use standpoint::label::documents::{DocumentFields, InputFormat, input_files, read_documents};
use standpoint::label::output::{
    LabelOutput, OnError, OutputFormat, RowFormatter, RunSettings, check_apart,
};
use standpoint::label::pipeline::{Event, LabelOptions, Labeller, Position};
use standpoint::output::Sink;
use standpoint::train::{HeadPlan, TrainConfig};
use standpoint::{
    Classifier, ClassifierOptions, Precision, Prediction, Query, parse_device, parse_dtype,
};

/// See [`standpoint::allocator`]: tensors are freed and reallocated every batch and step.
#[global_allocator]
static ALLOCATOR: standpoint::allocator::MiMalloc = standpoint::allocator::MiMalloc;

mod progress;

#[derive(Parser)]
#[command(
    name = "standpoint",
    version,
    // A later value wins (scripts append their own settings to a recipe's).
    args_override_self = true,
    about = "Stance toward actors, and sentiment, for every sentence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads [default: $RAYON_NUM_THREADS, else the physical cores this process may use].
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Classify sentences given on the command line or as JSONL rows; prints one JSON line per input.
    Classify(ClassifyArgs),
    /// Describe a model: architecture, heads, labels, parameter count.
    Info(InfoArgs),
    /// Label documents: one row per (sentence, actor) with stance, plus sentence sentiment.
    Label(Box<LabelArgs>),
    /// Fine-tune an encoder or a standpoint model on labelled JSONL/CSV/TSV data.
    Train(Box<TrainArgs>),
    /// Score a model on labelled data: accuracy, macro-F1, per-class scores, confusion.
    Eval(EvalArgs),
    /// Copy a model folder with its weights stored in another dtype (e.g. f16, half the size).
    Export(ExportArgs),
    /// Aggregate labelled rows into a holder × target table (CSV, JSON) and pictures (SVG).
    Report(ReportArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// Labelled rows: JSONL as `standpoint label` writes them, or CSV/TSV with a header.
    rows: PathBuf,
    /// Where the table goes (`.csv` or `.json`; `-` for stdout).
    #[arg(long, short, default_value = "-")]
    output: String,
    /// Table format when the output has no telling extension.
    #[arg(long, value_parser = ["csv", "json"], default_value = "csv")]
    format: String,
    #[command(flatten)]
    options: standpoint::report::ReportOptions,
    /// Write a holder × target heatmap of the net score (SVG).
    #[arg(long)]
    heatmap: Option<PathBuf>,
    /// Write the time line of one dyad, given as HOLDER:TARGET with --timeline-output.
    #[arg(long, requires = "timeline_output")]
    timeline: Option<String>,
    /// Where the time line goes (SVG).
    #[arg(long, requires = "timeline")]
    timeline_output: Option<PathBuf>,
}

fn report_rows(args: &ReportArgs) -> Result<()> {
    use standpoint::report::{DyadTable, plot};
    let table = DyadTable::from_file(&args.rows, &args.options)?;
    let json =
        args.output.ends_with(".json") || (args.format == "json" && !args.output.ends_with(".csv"));
    let bytes = if json {
        table.to_json()
    } else {
        table.to_csv()
    };
    if args.output == "-" {
        std::io::stdout().write_all(&bytes)?;
    } else {
        standpoint::output::write_atomic(std::path::Path::new(&args.output), &bytes)?;
    }
    if let Some(path) = &args.heatmap {
        standpoint::output::write_atomic(path, plot::heatmap_svg(&table)?.as_bytes())?;
    }
    if let (Some(dyad), Some(path)) = (&args.timeline, &args.timeline_output) {
        let (holder, target) = dyad
            .split_once(':')
            .context("--timeline: expected HOLDER:TARGET")?;
        standpoint::output::write_atomic(
            path,
            plot::timeline_svg(&table, holder, target)?.as_bytes(),
        )?;
    }
    eprintln!(
        "{} cells from {} rows{}",
        table.cells.len(),
        table.cells.iter().map(|c| c.total).sum::<usize>(),
        match table.skipped {
            0 => String::new(),
            n => format!(", {n} unreadable rows skipped"),
        }
    );
    Ok(())
}

#[derive(Args)]
struct ExportArgs {
    /// Model folder to copy.
    #[arg(long, short)]
    model: PathBuf,
    /// Output folder.
    #[arg(long, short)]
    output: PathBuf,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Fit each head's softmax temperature on this labelled dev file (JSONL/CSV/TSV with
    /// text, target and a field per head), so probabilities match accuracy; repeatable.
    #[arg(long = "calibrate", value_name = "FILE")]
    calibrate: Vec<String>,
}

#[derive(Args)]
struct LabelArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Inputs: text files or folders (one document per file), JSONL, CSV/TSV, or - for stdin.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Input format when the extension does not say it (and for stdin: default jsonl).
    #[arg(long)]
    format: Option<String>,
    /// Field (JSONL) or column (CSV) holding the document text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Field or column holding the document id.
    #[arg(long, default_value = "id")]
    id_field: String,
    /// Field or column holding the document's date, copied to its rows as `date` (for
    /// `standpoint report --date-field date`).
    #[arg(long)]
    date_field: Option<String>,
    /// An actor to score (its name is its only alias); repeatable.
    #[arg(long = "actor")]
    actors: Vec<String>,
    /// Actors with aliases: JSON ({"NATO": ["the alliance"]} or [{"name", "aliases"}]) or text
    /// lines `NATO: NATO | the alliance`.
    #[arg(long)]
    actors_file: Option<PathBuf>,
    /// Score every actor for every sentence, mentioned or not.
    #[arg(long)]
    all_actors: bool,
    /// Leave out sentences that mention no actor (by default they get a row with sentence heads).
    #[arg(long)]
    mentions_only: bool,
    /// Leave out the holder of each stance (saves the directed head's encoder passes).
    #[arg(long)]
    no_holders: bool,
    /// Output file (written whole at the end; resumable); stdout if absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// jsonl or csv.
    #[arg(long, default_value = "jsonl")]
    output_format: String,
    /// fail: stop at the first unreadable record; skip: record it in the errors file and go on.
    #[arg(long, value_enum, default_value = "fail")]
    on_error: OnError,
    /// Where skipped records go (default: OUTPUT.errors.jsonl).
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Continue an interrupted run writing to --output.
    #[arg(long, requires = "output")]
    resume: bool,
    /// Most inputs per encoder pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Most padded tokens per encoder pass.
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
    /// Sentences classified, and checkpointed, per window (memory bound; long documents too).
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Token limit per input (default: the model's).
    #[arg(long)]
    max_length: Option<usize>,
}

#[derive(Args)]
#[command(args_override_self = true)]
struct TrainArgs {
    /// Starting point: an encoder or a standpoint model (folder or hub id).
    #[arg(long, required_unless_present = "resume")]
    base: Option<String>,
    /// Output folder; it becomes a complete model folder.
    #[arg(long, short, required_unless_present = "resume")]
    output: Option<PathBuf>,
    /// Continue the interrupted run in this output folder, with its saved settings
    /// (other settings are refused rather than ignored).
    #[arg(long, value_name = "OUTPUT", conflicts_with_all = ["TrainConfig", "base", "output", "train", "heads"])]
    resume: Option<PathBuf>,
    /// Training file, FILE[:WEIGHT] (JSONL, CSV or TSV); repeat to mix files.
    #[arg(
        long = "train",
        value_name = "FILE[:WEIGHT]",
        required_unless_present = "resume"
    )]
    train: Vec<String>,
    /// Head to train, NAME[:pair|text|auto|directed][=FIELD] (default input: pair; directed: a holder → target head); repeatable.
    #[arg(
        long = "head",
        value_name = "SPEC",
        required_unless_present = "resume",
        value_parser = HeadPlan::parse
    )]
    heads: Vec<HeadPlan>,
    #[command(flatten)]
    config: TrainConfig,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Labelled file (JSONL, CSV or TSV); repeatable, pooled.
    #[arg(long = "data", value_name = "FILE", required = true)]
    data: Vec<String>,
    /// Field holding the sentence.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Field holding the target.
    #[arg(long, default_value = "target")]
    target_field: String,
    /// Read a head's labels from another field, HEAD=FIELD; repeatable.
    #[arg(long = "label-field", value_name = "HEAD=FIELD")]
    label_fields: Vec<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Score each target separately and average the scores over targets (P-Stance's
    /// official metric is the per-target favor/against F1, averaged).
    #[arg(long)]
    per_target: bool,
    /// Predict only among these labels of a head, HEAD=LABEL,LABEL (e.g.
    /// stance=against,favor for two-way data); repeatable.
    #[arg(long = "only-labels", value_name = "HEAD=LABELS")]
    only_labels: Vec<String>,
    /// Also print this metric as a last line `HEAD.METRIC VALUE` (e.g.
    /// stance.favor_against_f1, sentiment.macro_recall); repeatable.
    #[arg(long = "metric", value_name = "HEAD.METRIC")]
    metrics: Vec<String>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

#[derive(Args)]
struct ModelArgs {
    /// Model folder, or hub id `org/name[@revision]` [default: the shipped model in
    /// models/default, or $STANDPOINT_MODEL]
    #[arg(long, short)]
    model: Option<String>,
    /// Hub revision (branch, tag or commit) when the id carries none.
    #[arg(long)]
    revision: Option<String>,
    /// Use only local files and the hub cache (also: HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype: f32, f16, bf16, or int8 (int8 weights and activations in the encoder's
    /// dense layers, f32 elsewhere; CPU only).
    #[arg(long, default_value = "f32", value_parser = Precision::parse)]
    dtype: Precision,
}

impl ModelArgs {
    fn load(
        &self,
        batch_size: usize,
        batch_tokens: Option<usize>,
        max_length: Option<usize>,
    ) -> Result<Classifier> {
        let options = ClassifierOptions {
            device: parse_device(&self.device)?,
            precision: self.dtype,
            batch_size,
            batch_tokens,
            max_length,
            resolve: ResolveOptions {
                offline: self.offline,
                revision: self.revision.clone(),
                cache_dir: None,
            },
        };
        Ok(match &self.model {
            Some(model) => Classifier::load(model, &options)?,
            None => Classifier::load_default(&options)?,
        })
    }
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Actor the stance is judged against (applies to every TEXT).
    #[arg(long, short)]
    target: Option<String>,
    /// Holder whose attitude toward the target is asked, for a model's directed head.
    #[arg(long, requires = "target")]
    holder: Option<String>,
    /// JSONL file of {"text", "target"?, "holder"?, "id"?} rows, or - for stdin.
    #[arg(long, short, conflicts_with_all = ["texts", "target", "holder"])]
    input: Option<String>,
    /// Write here (atomically: a temporary file renamed at the end) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Most inputs per encoder pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Most padded tokens per encoder pass.
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<&'a str>,
    predictions: &'a Prediction,
}

/// Rows classified per call, so memory stays bounded for any input size.
const CHUNK: usize = 256;

fn classify(args: &ClassifyArgs) -> Result<()> {
    let classifier = args
        .model
        .load(args.batch_size, Some(args.batch_tokens), args.max_length)?;
    if let (Some(output), Some(input)) = (&args.output, &args.input) {
        standpoint::output::ensure_not_input(output, &[PathBuf::from(input)])?;
    }
    let mut out = Sink::open(args.output.as_deref())?;
    match &args.input {
        None => {
            let records: Vec<QueryRecord> = args
                .texts
                .iter()
                .map(|text| QueryRecord {
                    text: text.clone(),
                    target: args.target.clone(),
                    holder: args.holder.clone(),
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
            let mut records = JsonlQueries::new(reader, &name);
            for record in records.by_ref() {
                chunk.push(record?);
                if chunk.len() == CHUNK {
                    write_predictions(&classifier, &chunk, &name, &mut out)?;
                    chunk.clear();
                }
            }
            write_predictions(&classifier, &chunk, &name, &mut out)?;
            let unknown = records.unknown_fields();
            if !unknown.is_empty() {
                eprintln!(
                    "warning: {name}: ignored fields {} (a query reads {})",
                    unknown.iter().cloned().collect::<Vec<_>>().join(", "),
                    standpoint::data::jsonl::QUERY_FIELDS.join(", ")
                );
            }
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
            focus: None,
            holder: r.holder.as_deref(),
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
            holder: record.holder.as_deref(),
            predictions: prediction,
        };
        serde_json::to_writer(&mut *out, &row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn info(args: &InfoArgs) -> Result<()> {
    let classifier = args.model.load(1, None, None)?;
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

fn label(args: &LabelArgs) -> Result<()> {
    let classifier = args
        .model
        .load(args.batch_size, Some(args.batch_tokens), args.max_length)?;
    let actors = match (&args.actors_file, args.actors.is_empty()) {
        (Some(file), true) => ActorSet::from_file(file)?,
        (None, false) => ActorSet::from_names(&args.actors)?,
        (Some(_), false) => anyhow::bail!("give either --actor or --actors-file, not both"),
        (None, true) => {
            anyhow::bail!("name the actors: --actor NAME (repeatable) or --actors-file FILE")
        }
    };
    let on_error = args.on_error;
    let format = args.format.as_deref().map(InputFormat::parse).transpose()?;
    let fields = DocumentFields {
        id: args.id_field.clone(),
        text: args.text_field.clone(),
        date: args.date_field.clone(),
    };
    let formatter = RowFormatter::new(
        OutputFormat::parse(&args.output_format)?,
        classifier.heads(),
    );
    let files = input_files(&args.inputs, format)?;
    if let Some(output) = &args.output {
        check_apart(output, args.errors.as_deref(), &args.inputs, &files, format)?;
    }
    let options = LabelOptions {
        all_actors: args.all_actors,
        unmatched_rows: !args.mentions_only,
        window: args.window.max(1),
        holders: !args.no_holders,
    };
    let output_format = OutputFormat::parse(&args.output_format)?;
    let run = RunSettings {
        classifier: &classifier,
        files: &files,
        format,
        fields: &fields,
        actors: &actors,
        options: &options,
        output_format,
        on_error,
    }
    .fingerprint();
    let (mut output, from) = match &args.output {
        Some(path) => LabelOutput::file(
            path,
            args.errors.as_deref(),
            formatter,
            on_error,
            &run,
            args.resume,
        )?,
        None => (
            LabelOutput::stdout(formatter, on_error)?,
            Position::default(),
        ),
    };
    let labeller = Labeller::new(&classifier, &actors, options);
    let documents = read_documents(&args.inputs, format, &fields)?;
    let started = std::time::Instant::now();
    let before = output.counts();
    let total = progress::count_documents(&args.inputs, format);
    let mut bar = progress::LabelProgress::new(from, total, before.sentences);
    for event in labeller.stream(documents, from) {
        let event = event?;
        if let Event::Checkpoint(position) = &event {
            bar.update(*position, output.counts());
        }
        output.handle(event)?;
    }
    let counts = output.finish()?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    let sentences = counts.sentences_read - before.sentences_read;
    eprintln!(
        "labelled {} documents, {} sentences ({} read), {} rows in {seconds:.1} s ({:.1} sentences/s){}",
        counts.documents,
        counts.sentences,
        counts.sentences_read,
        counts.rows,
        sentences as f64 / seconds.max(1e-9),
        if counts.skipped > 0 {
            format!("; skipped {} records (see the errors file)", counts.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

fn train_config(args: &TrainArgs) -> Result<TrainConfig> {
    if let Some(output) = &args.resume {
        return Ok(standpoint::train::saved_config(output)?);
    }
    let (Some(base), Some(output)) = (&args.base, &args.output) else {
        anyhow::bail!("--base and --output are required (or --resume OUTPUT)");
    };
    Ok(TrainConfig {
        base: base.clone(),
        output: output.clone(),
        train: args.train.clone(),
        heads: args.heads.clone(),
        ..args.config.clone()
    })
}

fn train(args: &TrainArgs) -> Result<()> {
    let config = train_config(args)?;
    let mut progress = progress::TrainProgress::new();
    let summary = standpoint::train::train(&config, args.resume.is_some(), &mut progress)?;
    progress.finish();
    match summary.best {
        Some(best) => eprintln!(
            "saved the best model ({} = {:.4}) to {}",
            config.select,
            best,
            summary.output.display()
        ),
        None => eprintln!("saved the model to {}", summary.output.display()),
    }
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let classifier = args.model.load(args.batch_size, None, None)?;
    let head_fields = args
        .label_fields
        .iter()
        .map(|spec| {
            spec.split_once('=')
                .map(|(h, f)| (h.to_string(), f.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--label-field expects HEAD=FIELD, got {spec:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let only_labels = args
        .only_labels
        .iter()
        .map(|spec| {
            spec.split_once('=')
                .map(|(h, l)| {
                    (
                        h.to_string(),
                        l.split(',').map(|x| x.trim().to_string()).collect(),
                    )
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("--only-labels expects HEAD=LABEL,LABEL, got {spec:?}")
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let fields = EvalFields {
        text: args.text_field.clone(),
        target: args.target_field.clone(),
        head_fields,
        only_labels,
    };
    if args.per_target {
        let groups = evaluate_files_per_target(&classifier, &args.data, &fields)?;
        let summary = PerTargetReport::new(groups);
        let mut out = std::io::stdout().lock();
        for group in &summary.targets {
            writeln!(
                out,
                "== target {:?} ==\n{}\n",
                group.target,
                group.report.render()
            )?;
        }
        write!(out, "{}", summary.render())?;
        out.flush()?;
        if let Some(path) = &args.report {
            standpoint::eval::write_report(path, &summary)?;
        }
        return print_metrics(&args.metrics, |key| summary.metric(key));
    }
    let report = evaluate_files(&classifier, &args.data, &fields)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.render())?;
    out.flush()?;
    if let Some(path) = &args.report {
        standpoint::eval::write_report(path, &report)?;
    }
    print_metrics(&args.metrics, |key| report.metric(key))
}

/// Prints `KEY VALUE` per requested metric (as a fraction, for scripts).
fn print_metrics(keys: &[String], metric: impl Fn(&str) -> Option<f64>) -> Result<()> {
    for key in keys {
        let value = metric(key).with_context(|| {
            format!("--metric {key:?}: no such metric in this report (HEAD.accuracy|macro_f1|macro_recall|favor_against_f1)")
        })?;
        writeln!(std::io::stdout(), "{key} {value:.6}")?;
    }
    std::io::stdout().flush()?;
    Ok(())
}

fn export(args: &ExportArgs) -> Result<()> {
    let dtype = parse_dtype(&args.dtype)?;
    let fitted = if args.calibrate.is_empty() {
        Vec::new()
    } else {
        let model = args.model.to_str().context("--model: not valid UTF-8")?;
        let classifier = Classifier::load(model, &ClassifierOptions::default())?;
        calibrate_files(&classifier, &args.calibrate, &EvalFields::default())?
    };
    standpoint::export::export_model(&args.model, &args.output, dtype)?;
    for head in &fitted {
        eprintln!(
            "{}: temperature {:.3} on {} examples; ECE {:.2}% -> {:.2}%, log loss {:.4} -> {:.4}",
            head.head,
            head.temperature,
            head.examples,
            100.0 * head.ece_before,
            100.0 * head.ece_after,
            head.log_loss_before,
            head.log_loss_after
        );
    }
    let temperatures: Vec<(String, f64)> = fitted
        .iter()
        .map(|h| (h.head.clone(), h.temperature))
        .collect();
    if !temperatures.is_empty() {
        standpoint::export::set_temperatures(&args.output, &temperatures)?;
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn main() -> ExitCode {
    standpoint::allocator::keep_freed_pages();
    let cli = Cli::parse();
    // Before any thread starts, so that no later lookup of the count reads /proc.
    if let Err(e) = standpoint::threads::init(cli.threads) {
        eprintln!("error: --threads: {e}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Command::Classify(args) => classify(args),
        Command::Info(args) => info(args),
        Command::Label(args) => label(args),
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Export(args) => export(args),
        Command::Report(args) => report_rows(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing is lost, so stop quietly.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: the library's messages already quote their
/// source (`PATH: No such file or directory`), so a cause already in the text is not repeated.
fn report(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
