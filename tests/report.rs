//! `standpoint report`: a generated labelled corpus with known counts, reproduced exactly,
//! per period and filtered; CSV rows like JSONL rows; pictures; bad rows named by line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOLDERS: [&str; 3] = ["Russia", "Ukraine", "author"];
const TARGETS: [&str; 3] = ["NATO", "European Union", "Russia"];
const LABELS: [&str; 3] = ["against", "favor", "neutral"];

struct Row {
    holder: &'static str,
    target: &'static str,
    label: &'static str,
    score: f64,
    date: String,
}

fn corpus(n: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|_| Row {
            holder: HOLDERS[rng.random_range(0..3)],
            target: TARGETS[rng.random_range(0..3)],
            label: LABELS[rng.random_range(0..3)],
            score: rng.random_range(0.34..1.0),
            date: format!(
                "2026-{:02}-{:02}",
                rng.random_range(1..=4),
                rng.random_range(1..=28)
            ),
        })
        .collect()
}

/// JSONL as `standpoint label` writes it (the `author` holder is left out: the default).
fn write_jsonl(rows: &[Row], path: &Path) {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut v = serde_json::json!({
            "document": format!("d{i}"), "sentence": "s", "actor": r.target, "date": r.date,
            "stance": {"label": r.label, "score": r.score, "probabilities": {}},
            "sentiment": {"label": "neutral", "score": 0.5, "probabilities": {}},
        });
        if r.holder != "author" {
            v["holder"] = r.holder.into();
        }
        out.push_str(&v.to_string());
        out.push('\n');
        if i % 10 == 0 {
            // A sentence without an actor: no dyad.
            out.push_str("{\"document\": \"x\", \"sentence\": \"s\", \"actor\": null, \"sentiment\": {\"label\": \"neutral\", \"score\": 0.5}}\n");
        }
    }
    std::fs::write(path, out).unwrap();
}

fn write_csv(rows: &[Row], path: &Path) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record([
        "document",
        "actor",
        "holder",
        "date",
        "stance",
        "stance_score",
    ])
    .unwrap();
    for r in rows {
        let holder = if r.holder == "author" { "" } else { r.holder };
        w.write_record([
            "d",
            r.target,
            holder,
            r.date.as_str(),
            r.label,
            &r.score.to_string(),
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

fn report(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_standpoint"))
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

type Counts = BTreeMap<(String, String, String), [usize; 3]>;

fn expected(rows: &[Row], keep: impl Fn(&Row) -> bool, period: impl Fn(&Row) -> String) -> Counts {
    let mut counts = Counts::new();
    for r in rows.iter().filter(|r| keep(r)) {
        let cell = counts
            .entry((r.holder.into(), r.target.into(), period(r)))
            .or_default();
        cell[LABELS.iter().position(|l| *l == r.label).unwrap()] += 1;
    }
    counts
}

fn parsed(csv_text: &str) -> Counts {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "holder",
            "target",
            "period",
            "against",
            "favor",
            "neutral",
            "total",
            "mean_probability",
            "net"
        ]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let n = |i: usize| r[i].parse::<usize>().unwrap();
            let counts = [n(3), n(4), n(5)];
            assert_eq!(n(6), counts.iter().sum::<usize>());
            let net: f64 = r[8].parse().unwrap();
            let want = (counts[1] as f64 - counts[0] as f64) / n(6) as f64;
            assert!((net - want).abs() < 1e-4, "net {net} vs {want}");
            (
                (r[0].to_string(), r[1].to_string(), r[2].to_string()),
                counts,
            )
        })
        .collect()
}

fn stdout(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn known_counts_are_reproduced_overall_per_month_and_filtered() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = corpus(2000);
    let jsonl = tmp.path().join("rows.jsonl");
    let csv_rows = tmp.path().join("rows.csv");
    write_jsonl(&rows, &jsonl);
    write_csv(&rows, &csv_rows);
    let j = jsonl.to_str().unwrap();

    let all = expected(&rows, |_| true, |_| String::new());
    assert_eq!(parsed(&stdout(report(&[j]))), all);
    // CSV rows give the same table.
    assert_eq!(parsed(&stdout(report(&[csv_rows.to_str().unwrap()]))), all);

    let monthly = expected(&rows, |_| true, |r| r.date[..7].to_string());
    let args = [j, "--date-field", "date", "--period", "month"];
    assert_eq!(parsed(&stdout(report(&args))), monthly);

    let filtered = expected(
        &rows,
        |r| {
            r.score >= 0.6
                && ["Russia", "NATO"].contains(&r.holder)
                && ["Russia", "NATO"].contains(&r.target)
                && r.date.as_str() >= "2026-02-01"
                && r.date.as_str() <= "2026-03-15"
        },
        |_| String::new(),
    );
    let args = [
        j,
        "--min-probability",
        "0.6",
        "--actor",
        "Russia",
        "--actor",
        "NATO",
        "--date-field",
        "date",
        "--from",
        "2026-02-01",
        "--to",
        "2026-03-15",
    ];
    assert_eq!(parsed(&stdout(report(&args))), filtered);

    // JSON: the same counts, and the mean probability of each cell.
    let json_out = tmp.path().join("table.json");
    let heatmap = tmp.path().join("heatmap.svg");
    let timeline = tmp.path().join("timeline.svg");
    let args = [
        j,
        "--output",
        json_out.to_str().unwrap(),
        "--date-field",
        "date",
        "--period",
        "week",
        "--heatmap",
        heatmap.to_str().unwrap(),
        "--timeline",
        "Russia:NATO",
        "--timeline-output",
        timeline.to_str().unwrap(),
    ];
    stdout(report(&args));
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    let weekly = expected(
        &rows,
        |_| true,
        |r| standpoint::report::Period::Week.of(&r.date).unwrap(),
    );
    assert_eq!(table["cells"].as_array().unwrap().len(), weekly.len());
    let first = &table["cells"][0];
    let key = weekly.keys().next().unwrap();
    assert_eq!(
        (
            first["holder"].as_str().unwrap(),
            first["target"].as_str().unwrap()
        ),
        (key.0.as_str(), key.1.as_str())
    );
    let members: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.holder == key.0
                && r.target == key.1
                && standpoint::report::Period::Week.of(&r.date).unwrap() == key.2
        })
        .collect();
    let mean = members.iter().map(|r| r.score).sum::<f64>() / members.len() as f64;
    assert!((first["mean_probability"].as_f64().unwrap() - mean).abs() < 1e-9);
    let svg = std::fs::read_to_string(&heatmap).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("European Union") && svg.contains("author"));
    let svg = std::fs::read_to_string(&timeline).unwrap();
    assert!(svg.contains("Russia → NATO") && svg.contains("2026-W"));
}

#[test]
fn bad_rows_and_options_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rows.jsonl");
    std::fs::write(
        &path,
        "{\"actor\": \"NATO\", \"stance\": {\"label\": \"against\", \"score\": 0.9}}\n{not json\n",
    )
    .unwrap();
    let out = report(&[path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rows.jsonl:2: invalid JSON"), "{err}");

    std::fs::write(
        &path,
        "{\"actor\": \"NATO\", \"sentiment\": {\"label\": \"neutral\", \"score\": 0.9}}\n",
    )
    .unwrap();
    let err = String::from_utf8_lossy(&report(&[path.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("rows.jsonl:1: no `stance` label"), "{err}");

    let err =
        String::from_utf8_lossy(&report(&[path.to_str().unwrap(), "--period", "month"]).stderr)
            .to_string();
    assert!(err.contains("--date-field"), "{err}");
    let err = String::from_utf8_lossy(&report(&["missing.jsonl"]).stderr).to_string();
    assert!(err.contains("missing.jsonl"), "{err}");

    // A date that is not YYYY-MM-DD names its line; under --on-error skip it is counted.
    let good = "{\"actor\": \"NATO\", \"holder\": \"Russia\", \"date\": \"2026-03-04\", \"stance\": {\"label\": \"against\", \"score\": 0.9}}";
    let odd = "{\"actor\": \"NATO\", \"date\": \"4 March 2026\", \"stance\": {\"label\": \"favor\", \"score\": 0.8}}";
    std::fs::write(&path, format!("{good}\n{odd}\n{{not json\n{good}\n")).unwrap();
    let rows = path.to_str().unwrap();
    let out = report(&[rows, "--date-field", "date", "--period", "month"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rows.jsonl:2: field `date` is \"4 March 2026\", not a date"),
        "{err}"
    );
    let out = report(&[
        rows,
        "--date-field",
        "date",
        "--period",
        "month",
        "--on-error",
        "skip",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 cells from 2 rows, 2 unreadable rows skipped"),
        "{err}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Russia,NATO,2026-03,2,2,0.9000,-1.0000"),
        "{table}"
    );

    // Rows labelled without actors have no dyad to count.
    std::fs::write(
        &path,
        "{\"sentence\": \"Talks resumed.\", \"stance\": null, \"sentiment\": {\"label\": \"neutral\", \"score\": 0.9}}\n",
    )
    .unwrap();
    let err = String::from_utf8_lossy(&report(&[rows]).stderr).to_string();
    assert!(
        err.contains("rows.jsonl: no row names a target in `actor`"),
        "{err}"
    );
}
