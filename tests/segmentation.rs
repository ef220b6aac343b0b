//! Sentence segmentation: the gold set, invariants on long and hostile inputs.

use standpoint::label::quotes::speakers;
use standpoint::label::segment::{Segmenter, Span, sentences};

#[derive(serde::Deserialize)]
struct GoldCase {
    text: String,
    sentences: Vec<String>,
}

fn gold() -> Vec<GoldCase> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/segmentation-gold.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("gold set readable")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("gold line is a case"))
        .collect()
}

/// The invariants every output must satisfy, whatever the input.
fn assert_well_formed(text: &str, spans: &[Span]) {
    let mut previous_end = 0;
    for (i, span) in spans.iter().enumerate() {
        assert!(span.start < span.end, "span {i} {span:?} is empty");
        assert!(
            span.start >= previous_end,
            "span {i} {span:?} overlaps or precedes the one before (ends at {previous_end})"
        );
        assert!(span.end <= text.len(), "span {i} {span:?} past the end");
        assert!(
            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
            "span {i} {span:?} not on char boundaries"
        );
        let sentence = span.text(text);
        assert_eq!(sentence, sentence.trim(), "span {i} {span:?} not trimmed");
        assert!(!sentence.is_empty(), "span {i} {span:?} is whitespace only");
        previous_end = span.end;
    }
}

#[test]
fn gold_set_is_segmented_exactly() {
    let cases = gold();
    assert!(cases.len() >= 40, "gold set has {} cases", cases.len());
    let segmenter = Segmenter::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let spans = segmenter.split(&case.text);
        assert_well_formed(&case.text, &spans);
        let found: Vec<&str> = spans.iter().map(|s| s.text(&case.text)).collect();
        let wanted: Vec<&str> = case.sentences.iter().map(|s| s.trim()).collect();
        if found != wanted {
            failures.push(format!(
                "case {} {:?}\n  wanted {wanted:?}\n  found  {found:?}",
                i + 1,
                case.text
            ));
        }
        // The spans slice back to exactly those strings, and `sentences` agrees.
        for (span, sentence) in spans.iter().zip(&case.sentences) {
            assert_eq!(&case.text[span.start..span.end], sentence.trim());
        }
        assert_eq!(sentences(&case.text), spans);
    }
    assert!(
        failures.is_empty(),
        "{} of {} gold cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn empty_and_whitespace_only_input_give_no_spans() {
    for text in [
        "",
        " ",
        "\n",
        "\r\n\r\n",
        " \t \n \u{a0}\u{2003} \u{2028}\u{2029}\u{85}\u{0b}\u{0c}\r",
    ] {
        assert_eq!(sentences(text), [], "{text:?}");
    }
}

#[test]
fn mixed_line_endings_end_sentences() {
    let text = "NATO summit opens\r\nLeaders met on Tuesday. They discussed Ukraine.\nThe U.S. envoy spoke\r\n\r\nRussia objected.\rTalks go on\r\n";
    let spans = sentences(text);
    assert_well_formed(text, &spans);
    let found: Vec<&str> = spans.iter().map(|s| s.text(text)).collect();
    assert_eq!(
        found,
        [
            "NATO summit opens",
            "Leaders met on Tuesday.",
            "They discussed Ukraine.",
            "The U.S. envoy spoke",
            "Russia objected.",
            "Talks go on",
        ]
    );
}

#[test]
fn lone_and_unbalanced_quotes_do_not_swallow_sentences() {
    let text = "He said \"we will see. The meeting ended. Nobody came.";
    let found: Vec<&str> = sentences(text).iter().map(|s| s.text(text)).collect();
    assert_eq!(
        found,
        [
            "He said \"we will see.",
            "The meeting ended.",
            "Nobody came."
        ]
    );
    for text in [
        "\"",
        "'",
        "\u{201c}",
        "\u{201d}",
        "\u{2019}",
        "\" \" \"",
        "“Sanctions.” ” “ ‘",
        "It ended.\" Then",
        "(",
        ")",
        ".)",
        "(.) A",
        "...",
        "…",
        "U.S.",
        "1.",
        ". . . ? ! !",
    ] {
        assert_well_formed(text, &sentences(text));
    }
}

#[test]
fn span_text_of_a_foreign_string_is_empty_not_a_panic() {
    let span = Span { start: 1, end: 9 };
    assert_eq!(span.text("abc"), "");
    assert_eq!(span.text("é"), "");
    assert_eq!(Span { start: 1, end: 2 }.text("é"), "");
}

/// A deterministic stream of pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Tokens that exercise every rule, mixed at random into long texts.
const TOKENS: &[&str] = &[
    "NATO",
    "Russia",
    "Ukraine",
    "the",
    "said",
    "sanctions",
    "U.S.",
    "U.K.",
    "U.N.",
    "Gen.",
    "Mr.",
    "Jan.",
    "etc.",
    "e.g.",
    "a.m.",
    "p.m.",
    "approx.",
    "No.",
    "J.",
    "R.",
    "3.5",
    "$1.2",
    "v2.0",
    "The",
    "But",
    "He",
    "talks.",
    "ended?",
    "over!",
    "\"",
    "'",
    "\u{201c}",
    "\u{201d}",
    "\u{2018}",
    "\u{2019}",
    "«",
    "»",
    "(",
    ")",
    ".)",
    "...",
    "…",
    "1.",
    "iv.",
    "-",
    "•",
    "\n",
    "\r\n",
    "\n\n",
    "\r",
    "\u{2028}",
    "\t",
    "  ",
    "é",
    "日本語。",
    "🇺🇦",
    "\u{301}",
    "\u{feff}",
    "\u{200b}",
    "Кремль.",
    "?!",
    ".",
    ",",
    ":",
    "``",
    "''",
];

fn random_text(rng: &mut Rng, tokens: usize) -> String {
    let mut text = String::new();
    for _ in 0..tokens {
        text.push_str(rng.pick(TOKENS));
        if !rng.next().is_multiple_of(4) {
            text.push(' ');
        }
    }
    text
}

#[test]
fn random_texts_give_well_formed_spans() {
    let segmenter = Segmenter::new();
    let mut rng = Rng(0x5eed_0f5e_9e00);
    for round in 0..300 {
        let tokens = 1 + (rng.next() % 200) as usize;
        let text = random_text(&mut rng, tokens);
        let spans = segmenter.split(&text);
        assert_well_formed(&text, &spans);
        // Every non-whitespace character is covered by some span.
        let covered: usize = spans
            .iter()
            .map(|s| s.text(&text).chars().filter(|c| !c.is_whitespace()).count())
            .sum();
        let total = text.chars().filter(|c| !c.is_whitespace()).count();
        assert_eq!(covered, total, "round {round}: {text:?}");
    }
}

#[test]
fn long_synthetic_articles_give_well_formed_spans() {
    let segmenter = Segmenter::new();
    let mut rng = Rng(42);
    // One long line of news-like sentences: crosses many 16 KiB windows.
    let sentences_pool = [
        "Sanctions imposed by the U.S. hit Gazprom Inc. hard, Mr. Smith said.",
        "The Kremlin said it would respond by Jan. 15 at 10 a.m. Moscow time.",
        "\u{201c}We will not back down,\u{201d} the minister told reporters.",
        "Ukraine\u{2019}s economy grew 3.5 percent (officials expected less.) The IMF agreed.",
        "Did NATO really say \"no\"? Diplomats were unsure...",
        "John F. Kennedy and J. R. R. Tolkien never met.",
    ];
    let mut line = String::new();
    let mut count = 0;
    while line.len() < 300_000 {
        line.push_str(sentences_pool[(rng.next() % sentences_pool.len() as u64) as usize]);
        line.push(' ');
        count += 1;
    }
    let spans = segmenter.split(&line);
    assert_well_formed(&line, &spans);
    // Windows must neither lose nor invent many boundaries: about one span per sentence
    // (some pool entries hold two sentences).
    assert!(
        spans.len() >= count && spans.len() <= 2 * count,
        "{} spans for {count} sentences",
        spans.len()
    );
    // Same article with paragraphs.
    let article = line
        .replace("said. ", "said.\n\n")
        .replace("agreed. ", "agreed.\r\n");
    let spans = segmenter.split(&article);
    assert_well_formed(&article, &spans);
    for span in &spans {
        assert!(!span.text(&article).contains(['\n', '\r']));
    }
    // A random-token article of about 1 MB.
    let text = random_text(&mut rng, 250_000);
    assert_well_formed(&text, &segmenter.split(&text));
}

#[test]
fn very_long_sentence_without_punctuation_is_still_returned() {
    let text = "Russia NATO sanctions talks ".repeat(4_000); // about 112 KB
    let spans = sentences(&text);
    assert_eq!(
        spans,
        [Span {
            start: 0,
            end: text.trim_end().len()
        }]
    );
}

#[test]
fn five_megabyte_single_lines_complete() {
    // News-like prose and one unbroken word, 5 MB each: they must simply finish (no timing
    // assertion), with well-formed spans.
    for unit in [
        "Sanctions imposed by the U.S. on Gazprom rose 3.5 percent, \u{201c}Mr. Smith\u{201d} said. ",
        "x",
    ] {
        let text = unit.repeat(5_000_000 / unit.len());
        let spans = sentences(&text);
        assert_well_formed(&text, &spans);
        assert!(!spans.is_empty(), "{unit:?}");
    }
}

#[test]
fn quote_heavy_megabyte_lines_complete() {
    // Quote marks make sentencex's pairing quadratic; windowing keeps these linear
    // (unwindowed, each would take minutes).
    for unit in [
        "'",
        "`",
        "\u{201c}",
        "Russia's 'move' isn't the U.S.' fault. ",
        "\"a. ",
        "( '",
        "é",
    ] {
        let text = unit.repeat(1_000_000 / unit.len());
        let spans = sentences(&text);
        assert_well_formed(&text, &spans);
        assert!(!spans.is_empty(), "{unit:?}");
    }
}

#[test]
fn segmenter_is_send_sync_and_default() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Segmenter>();
    let text = "Talks failed. The envoy left.";
    assert_eq!(Segmenter::default().split(text), sentences(text));
}

#[derive(serde::Deserialize)]
struct QuoteCase {
    text: String,
    sentences: Vec<String>,
    /// Per sentence: the speaker's name, `"?"` for an attributed pronoun left unresolved, or
    /// null for a sentence nobody is said to speak.
    speakers: Vec<Option<String>>,
}

#[test]
fn quote_gold_set_sentences_and_speakers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/quotes-gold.jsonl"
    );
    let cases: Vec<QuoteCase> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        cases.len() >= 30,
        "quote gold set has {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(case.sentences.len(), case.speakers.len(), "case {}", i + 1);
        let spans = sentences(&case.text);
        assert_well_formed(&case.text, &spans);
        let found: Vec<&str> = spans.iter().map(|s| s.text(&case.text)).collect();
        let speakers: Vec<Option<String>> = speakers(&case.text, &spans)
            .into_iter()
            .map(|s| s.map(|s| s.name.unwrap_or_else(|| "?".into())))
            .collect();
        if found != case.sentences || speakers != case.speakers {
            failures.push(format!(
                "case {} {:?}\n  wanted {:?} {:?}\n  found  {found:?} {speakers:?}",
                i + 1,
                case.text,
                case.sentences,
                case.speakers
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} quote cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn attributions_point_at_their_words() {
    let text =
        "Alexander Grushko spoke on Monday.\n“Cooperation has ended. NATO refused it,” he said.";
    let spans = sentences(text);
    let found = speakers(text, &spans);
    let attribution = found[2].as_ref().unwrap().attribution;
    assert_eq!(attribution.text(text), "he said");
    assert_eq!(found[1].as_ref().unwrap().attribution, attribution);
    assert_eq!(
        found[0].as_ref().unwrap().attribution.text(text),
        "Alexander Grushko spoke"
    );
}
