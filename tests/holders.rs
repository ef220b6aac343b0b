//! Holders: a directed head reads `HOLDER → TARGET` pairs, and `label` gives each
//! non-neutral row the candidate that head scores highest (or `author`), the speaker's
//! actor included.

mod common;

use common::*;
use standpoint::label::actors::ActorSet;
use standpoint::label::documents::Document;
use standpoint::label::pipeline::{AUTHOR, Event, HOLDER_THRESHOLD, LabelOptions, Labeller, Row};
use standpoint::{HeadInput, HeadPooling, HeadSpec, Query};

const LABELS: [&str; 3] = ["against", "neutral", "favor"];

/// The tiny fixture with a stance head biased toward `against` and a direction head (its own
/// weights) read as `direction_input`; mentions marked, as the shipped model does.
fn holder_model(direction_input: HeadInput) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = copy_fixture("tiny-bert");
    edit_weights(&dir, |t| {
        let weight = t["classifier.weight"].clone();
        let bias = t["classifier.bias"].clone();
        let device = bias.device().clone();
        let shift =
            |by: [f32; 3]| (&bias + candle_core::Tensor::new(&by, &device).unwrap()).unwrap();
        t.insert("heads.stance.classifier.weight".into(), weight.clone());
        t.insert(
            "heads.stance.classifier.bias".into(),
            shift([8.0, 0.0, 0.0]),
        );
        // Other weights than the stance head's, so candidates score apart.
        let flipped = (weight.affine(-0.7, 0.0)).unwrap();
        t.insert("heads.direction.classifier.weight".into(), flipped);
        t.insert(
            "heads.direction.classifier.bias".into(),
            shift([1.5, 0.0, 0.0]),
        );
        t.remove("classifier.weight");
        t.remove("classifier.bias");
    });
    let labels: Vec<String> = LABELS.iter().map(|s| s.to_string()).collect();
    let heads = vec![
        HeadSpec::new(
            "stance",
            labels.clone(),
            HeadInput::Pair,
            HeadPooling::Pooler,
        ),
        HeadSpec::new("direction", labels, direction_input, HeadPooling::Pooler),
    ];
    edit_config(&dir, |c| {
        c["standpoint"] = serde_json::json!({
            "format": 1, "name": "holders", "version": "0.1", "heads": heads,
            "mention_markers": {"open": "«", "close": "»"},
        });
    });
    (tmp, dir)
}

#[test]
fn a_directed_query_reads_holder_arrow_target_with_the_target_marked() {
    let (_a, directed_dir) = holder_model(HeadInput::Directed);
    let (_b, pair_dir) = holder_model(HeadInput::Pair);
    let directed = load(&directed_dir).unwrap();
    let pair = load(&pair_dir).unwrap();
    let text = "Moscow accused the alliance of provocations near NATO borders.";
    let got = directed
        .classify(&[Query::directed("Russia", "NATO", text)])
        .unwrap();
    let nato = text.find("NATO").unwrap();
    let want = pair
        .classify(&[Query::pair("Russia → NATO", text).with_focus(nato, nato + 4)])
        .unwrap();
    assert_eq!(got[0]["direction"], want[0]["direction"]);
    // The directed query is only the directed head's; a plain pair only the others'.
    assert_eq!(got[0].keys().collect::<Vec<_>>(), ["direction"]);
    let plain = directed.classify(&[Query::pair("NATO", text)]).unwrap();
    assert_eq!(plain[0].keys().collect::<Vec<_>>(), ["stance"]);
    // The other direction is another question.
    let back = directed
        .classify(&[Query::directed("NATO", "Russia", text)])
        .unwrap();
    assert_ne!(got[0]["direction"], back[0]["direction"]);
    // A holder without a target is refused, not guessed.
    let bad = Query {
        target: None,
        ..Query::directed("Russia", "NATO", text)
    };
    assert!(directed.classify(&[bad]).is_err());
}

fn label(dir: &std::path::Path, actors: &ActorSet, text: &str, options: LabelOptions) -> Vec<Row> {
    let classifier = load(dir).unwrap();
    let labeller = Labeller::new(&classifier, actors, options);
    let docs = vec![Ok(Document {
        id: "d".into(),
        text: text.into(),
        date: None,
    })];
    labeller
        .stream(docs.into_iter(), Default::default())
        .filter_map(|e| match e.unwrap() {
            Event::Row(row) => Some(*row),
            _ => None,
        })
        .collect()
}

fn actors() -> ActorSet {
    ActorSet::from_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/actors.json"))
        .unwrap()
}

#[test]
fn label_gives_each_row_the_candidate_the_directed_head_scores_highest() {
    let (_tmp, dir) = holder_model(HeadInput::Directed);
    let classifier = load(&dir).unwrap();
    let actors = actors();
    let text = "Moscow accused NATO and Kyiv of provocations. NATO refused.";
    let rows = label(&dir, &actors, text, LabelOptions::default());
    assert_eq!(
        rows.len(),
        4,
        "three actors in the first sentence, one in the second"
    );
    let mut chosen = 0;
    for row in &rows {
        let actor = row.actor.as_deref().unwrap();
        assert_eq!(row.predictions["stance"].label, "against");
        assert!(!row.predictions.contains_key("direction"));
        let others: Vec<&str> = rows
            .iter()
            .filter(|r| r.sentence_index == row.sentence_index)
            .filter_map(|r| r.actor.as_deref())
            .filter(|a| *a != actor)
            .collect();
        let scored: Vec<(f32, &str)> = others
            .iter()
            .map(|c| {
                // The target's mention, as label marks it (ASCII text: characters are bytes).
                let from = row.mention_start.unwrap() - row.sentence_start;
                let to = row.mention_end.unwrap() - row.sentence_start;
                let q = Query::directed(c, actor, &row.sentence).with_focus(from, to);
                let p = classifier.classify(&[q]).unwrap()[0]["direction"].probabilities["against"];
                (p, *c)
            })
            .collect();
        let want = match scored
            .iter()
            .copied()
            .reduce(|a, b| if b.0 > a.0 { b } else { a })
        {
            Some((p, c)) if p >= HOLDER_THRESHOLD => (c.to_string(), p),
            Some((p, _)) => (AUTHOR.to_string(), 1.0 - p),
            None => (AUTHOR.to_string(), 1.0),
        };
        chosen += usize::from(want.0 != AUTHOR);
        assert_eq!(row.holder.as_deref(), Some(want.0.as_str()), "{actor}");
        let got = row.holder_probability.unwrap();
        assert!((got - want.1).abs() < 1e-5, "{actor}: {got} vs {}", want.1);
    }
    assert!(
        chosen >= 2,
        "the test should exercise the choice among candidates"
    );
    assert_eq!(
        rows[3].holder.as_deref(),
        Some(AUTHOR),
        "nobody else is named"
    );

    // Without holders (or a directed head) rows carry none.
    let none = label(
        &dir,
        &actors,
        text,
        LabelOptions {
            holders: false,
            ..LabelOptions::default()
        },
    );
    assert!(none.iter().all(|r| r.holder.is_none()));
    let (_plain, plain_dir) = two_head_model();
    let plain = label(&plain_dir, &actors, text, LabelOptions::default());
    assert!(plain.iter().all(|r| r.holder.is_none()));
}

#[test]
fn the_speakers_actor_is_a_candidate_in_the_sentences_it_speaks() {
    let (_tmp, dir) = holder_model(HeadInput::Directed);
    let actors = actors();
    let text = "Russia's deputy foreign minister said cooperation had ended. \
                \"NATO has refused practical cooperation,\" he said.";
    let rows = label(&dir, &actors, text, LabelOptions::default());
    let quoted = rows
        .iter()
        .find(|r| r.sentence_index == 1 && r.actor.as_deref() == Some("NATO"))
        .expect("a NATO row for the quote");
    assert_eq!(
        quoted.speaker.as_deref(),
        Some("Russia's deputy foreign minister")
    );
    // Russia is not mentioned in the quote; it speaks it.
    assert_eq!(quoted.holder.as_deref(), Some("Russia"));
    assert!(quoted.holder_probability.unwrap() >= HOLDER_THRESHOLD);
}
