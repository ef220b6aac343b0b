//! Actor matching: word boundaries, possessives, case, longest match, files and errors.

use std::path::{Path, PathBuf};

use standpoint::Error;
use standpoint::label::actors::{Actor, ActorSet, Mention};

fn set(actors: &[(&str, &[&str])]) -> ActorSet {
    ActorSet::new(
        actors
            .iter()
            .map(|(name, aliases)| Actor::new(*name, aliases.iter().copied()))
            .collect(),
    )
    .unwrap()
}

fn example() -> ActorSet {
    ActorSet::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/actors.json")).unwrap()
}

/// Every mention as (actor name, text), after checking the offsets.
fn found<'a>(actors: &'a ActorSet, sentence: &'a str) -> Vec<(&'a str, &'a str)> {
    let mentions = actors.find(sentence);
    check_offsets(sentence, &mentions);
    mentions
        .iter()
        .map(|m| {
            (
                actors.actors()[m.actor].name.as_str(),
                &sentence[m.start..m.end],
            )
        })
        .collect()
}

fn check_offsets(sentence: &str, mentions: &[Mention]) {
    let mut last_end = 0;
    for m in mentions {
        assert!(m.start < m.end, "{m:?}");
        assert!(m.start >= last_end, "overlap or disorder at {m:?}");
        assert!(sentence.is_char_boundary(m.start), "{m:?}");
        assert!(sentence.is_char_boundary(m.end), "{m:?}");
        last_end = m.end;
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn error_text(path: &Path) -> String {
    match ActorSet::from_file(path) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn actor_set_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ActorSet>();
}

#[test]
fn whole_words_only() {
    let actors = set(&[("Russia", &[]), ("NATO", &[])]);
    assert_eq!(found(&actors, "Russian officials met."), []);
    assert_eq!(
        found(&actors, "Belorussia and Russia."),
        [("Russia", "Russia")]
    );
    assert_eq!(found(&actors, "NATOs of the world"), []);
    assert_eq!(found(&actors, "NATO2 and 2NATO"), []);
    assert_eq!(
        found(&actors, "pro-Russia, anti-NATO (NATO)"),
        [("Russia", "Russia"), ("NATO", "NATO"), ("NATO", "NATO")]
    );
    // Russian added as an alias counts.
    let actors = set(&[("Russia", &["Russian"])]);
    assert_eq!(found(&actors, "Russian officials"), [("Russia", "Russian")]);
}

#[test]
fn possessives_straight_and_curly() {
    let actors = example();
    let sentence =
        "NATO's plan, Russia’s answer and the alliance's reply; the United States' view.";
    assert_eq!(
        found(&actors, sentence),
        [
            ("NATO", "NATO"),
            ("Russia", "Russia"),
            ("NATO", "the alliance"),
            ("United States", "United States"),
        ]
    );
    let m = actors.find("Russia’s")[0];
    assert_eq!((m.start, m.end), (0, 6));
    // An apostrophe inside an alias matches either form.
    let actors = set(&[("PRC", &["People's Republic"])]);
    assert_eq!(
        found(&actors, "the People’s Republic"),
        [("PRC", "People’s Republic")]
    );
}

#[test]
fn acronyms_are_case_sensitive_other_aliases_are_not() {
    let actors = example();
    assert_eq!(
        found(&actors, "Let us talk to US officials."),
        [("United States", "US")]
    );
    assert_eq!(found(&actors, "us and Us and uS"), []);
    assert_eq!(
        found(&actors, "The EU, the eu, the Eu."),
        [("European Union", "EU")]
    );
    assert_eq!(found(&actors, "nato said"), []);
    assert_eq!(
        found(&actors, "The Kremlin denied it."),
        [("Russia", "The Kremlin")]
    );
    assert_eq!(
        found(&actors, "MOSCOW (Reuters) - THE KREMLIN said"),
        [("Russia", "MOSCOW"), ("Russia", "THE KREMLIN")]
    );
    assert_eq!(
        found(&actors, "moscow, washington"),
        [("Russia", "moscow"), ("United States", "washington")]
    );
    // One letter is not an acronym: "G7" matches "g7".
    let actors = set(&[("G7", &[])]);
    assert_eq!(found(&actors, "the g7 met"), [("G7", "g7")]);
}

#[test]
fn dotted_acronym() {
    let actors = example();
    assert_eq!(
        found(&actors, "He faces sanctions by the U.S."),
        [("United States", "U.S.")]
    );
    assert_eq!(
        found(&actors, "U.S.-led talks; the U.S. said"),
        [("United States", "U.S."), ("United States", "U.S.")]
    );
    assert_eq!(found(&actors, "the u.s. said; the U.S said"), []);
    assert_eq!(
        found(&actors, "the U.S.A. said"),
        [("United States", "U.S.")]
    );
    let sentence = "sanctions by the U.S.";
    let m = actors.find(sentence)[0];
    assert_eq!(m.end, sentence.len());
}

#[test]
fn longest_match_wins_and_matches_do_not_overlap() {
    let actors = set(&[("Union", &[]), ("European Union", &[])]);
    assert_eq!(
        found(&actors, "the European Union said the Union"),
        [("European Union", "European Union"), ("Union", "Union")]
    );
    let actors = set(&[
        ("Government", &["government"]),
        ("Russia", &["Russia", "Russian government"]),
    ]);
    assert_eq!(
        found(&actors, "the Russian government and the government"),
        [
            ("Russia", "Russian government"),
            ("Government", "government")
        ]
    );
    // Leftmost first: "the alliance" starts before "alliance members".
    let actors = set(&[
        ("NATO", &["the alliance"]),
        ("Members", &["alliance members"]),
    ]);
    assert_eq!(
        found(&actors, "the alliance members"),
        [("NATO", "the alliance"), ("Members", "members")]
    );
}

#[test]
fn whitespace_in_aliases_matches_any_run() {
    let actors = example();
    for sentence in [
        "the  Kremlin",
        "the\nKremlin",
        "the \t\r\n Kremlin",
        "the\u{a0}Kremlin",
    ] {
        assert_eq!(
            found(&actors, sentence),
            [("Russia", sentence)],
            "{sentence:?}"
        );
    }
    assert_eq!(found(&actors, "theKremlin"), []);
    assert_eq!(found(&actors, "the-Kremlin"), []);
    // Aliases are normalised too.
    let actors = set(&[("NATO", &["  the \n alliance "])]);
    assert_eq!(actors.actors()[0].aliases, ["NATO", "the alliance"]);
    assert_eq!(
        found(&actors, "the   alliance"),
        [("NATO", "the   alliance")]
    );
}

#[test]
fn multiple_mentions_and_first_per_actor() {
    let actors = example();
    let sentence =
        "Kyiv asked Washington, while Moscow told the alliance that Ukraine and NATO erred.";
    assert_eq!(
        found(&actors, sentence),
        [
            ("Ukraine", "Kyiv"),
            ("United States", "Washington"),
            ("Russia", "Moscow"),
            ("NATO", "the alliance"),
            ("Ukraine", "Ukraine"),
            ("NATO", "NATO"),
        ]
    );
    let first: Vec<(usize, &str)> = actors
        .mentioned(sentence)
        .into_iter()
        .map(|(i, m)| {
            assert_eq!(i, m.actor);
            (i, &sentence[m.start..m.end])
        })
        .collect();
    // Actor order of the file: NATO, Russia, Ukraine, European Union, United States.
    assert_eq!(
        first,
        [
            (0, "the alliance"),
            (1, "Moscow"),
            (2, "Kyiv"),
            (4, "Washington")
        ]
    );
    assert_eq!(actors.mentioned("Nothing here."), []);
}

#[test]
fn unicode_text_around_mentions() {
    let actors = set(&[
        ("Россия", &["Москва"]),
        ("Élysée", &["Paris"]),
        ("NATO", &[]),
    ]);
    let sentence =
        "« L’Élysée » 🇫🇷 a parlé; «Москва» — NATO’s 🚀 réponse; ÉLYSÉE, élysée, Élyséen.";
    assert_eq!(
        found(&actors, sentence),
        [
            ("Élysée", "Élysée"),
            ("Россия", "Москва"),
            ("NATO", "NATO"),
            ("Élysée", "ÉLYSÉE"),
            ("Élysée", "élysée"),
        ]
    );
    // A combining accent continues the word: "Paris" + U+0301 is not "Paris".
    assert_eq!(
        found(&actors, "Paris\u{301} and Paris"),
        [("Élysée", "Paris")]
    );
    // Emoji and curly quotes directly around an alias are boundaries.
    assert_eq!(
        found(&actors, "🚀NATO🚀 “NATO”"),
        [("NATO", "NATO"), ("NATO", "NATO")]
    );
}

#[test]
fn empty_and_odd_sentences() {
    let actors = example();
    assert_eq!(actors.find(""), []);
    assert_eq!(actors.mentioned(""), []);
    assert_eq!(found(&actors, " \n\t "), []);
    assert_eq!(found(&actors, "the"), []);
    assert_eq!(found(&actors, "the "), []);
    assert_eq!(found(&actors, "U.S"), []);
    // Every prefix of a sentence ending inside multibyte characters.
    let sentence = "the Kremlin’s Москва 🇺🇦 Kyiv’";
    for (end, _) in sentence.char_indices() {
        check_offsets(&sentence[..end], &actors.find(&sentence[..end]));
    }
}

#[test]
fn a_one_megabyte_sentence() {
    let actors = example();
    let chunk = "Officials in Moscow said the alliance’s plan is theirs, né ünïcödé 🚀 — ";
    let mut sentence = String::new();
    while sentence.len() < 1 << 20 {
        sentence.push_str(chunk);
    }
    let mentions = actors.find(&sentence);
    check_offsets(&sentence, &mentions);
    let repeats = sentence.len() / chunk.len();
    assert_eq!(mentions.len(), 2 * repeats);
    assert_eq!(actors.mentioned(&sentence).len(), 2);
    // One very long word, and a long run of whitespace.
    let word = "a".repeat(1 << 20);
    assert_eq!(actors.find(&word), []);
    let spaced = format!("the{}Kremlin", " ".repeat(1 << 20));
    assert_eq!(actors.find(&spaced).len(), 1);
}

#[test]
fn names_are_aliases_and_normalised() {
    let actors = set(&[
        (" NATO ", &["the alliance", "the alliance"]),
        ("Russia", &["Moscow", "Russia"]),
    ]);
    assert_eq!(
        actors.actors(),
        [
            Actor::new("NATO", ["NATO", "the alliance"]),
            Actor::new("Russia", ["Moscow", "Russia"]),
        ]
    );
}

#[test]
fn from_names() {
    let names = ["NATO".to_string(), "United States".to_string()];
    let actors = ActorSet::from_names(&names).unwrap();
    assert_eq!(
        actors.actors()[1],
        Actor::new("United States", ["United States"])
    );
    assert_eq!(
        found(&actors, "the united states and NATO"),
        [("United States", "united states"), ("NATO", "NATO")]
    );

    for (names, needle) in [
        (vec![], "no actors"),
        (vec![" ".to_string()], "empty actor name"),
        (vec!["NATO".into(), "nato".into()], "duplicate actor name"),
        (vec!["--".into()], "no letter or digit"),
    ] {
        match ActorSet::from_names(&names) {
            Err(Error::InvalidOption { option, reason }) => {
                assert_eq!(option, "actor");
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("{names:?}: {other:?}"),
        }
    }
}

#[test]
fn new_rejects_bad_sets() {
    let cases: Vec<(Vec<Actor>, &str)> = vec![
        (vec![], "no actors"),
        (vec![Actor::new("", ["x"])], "empty actor name"),
        (vec![Actor::new("NATO", ["  "])], "alias 1 is empty"),
        (vec![Actor::new("NATO", ["ok", ""])], "alias 2 is empty"),
        (vec![Actor::new("NATO", ["..."])], "no letter or digit"),
        (
            vec![Actor::new("NATO", ["x"]), Actor::new("Nato", ["y"])],
            "duplicate actor name",
        ),
        (
            vec![
                Actor::new("Russia", ["Moscow"]),
                Actor::new("City", ["MOSCOW"]),
            ],
            "\"MOSCOW\" is also an alias of \"Russia\"",
        ),
        (
            vec![
                Actor::new("A", ["the  alliance"]),
                Actor::new("B", ["The alliance"]),
            ],
            "is also an alias of \"A\"",
        ),
        // A name that is another actor's alias is an alias of both.
        (
            vec![
                Actor::new("Russia", ["Kremlin"]),
                Actor::new("Kremlin", Vec::<String>::new()),
            ],
            "is also an alias",
        ),
    ];
    for (actors, needle) in cases {
        let given = format!("{actors:?}");
        match ActorSet::new(actors) {
            Err(Error::InvalidOption { option, reason }) => {
                assert_eq!(option, "actors");
                assert!(reason.contains(needle), "{given}: {reason}");
            }
            other => panic!("{given}: {other:?}"),
        }
    }
}

#[test]
fn example_file_loads_in_order() {
    let actors = example();
    let names: Vec<&str> = actors.actors().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "NATO",
            "Russia",
            "Ukraine",
            "European Union",
            "United States",
            "Turkey",
            "Greece"
        ]
    );
    assert!(actors.actors()[4].aliases.contains(&"US".to_string()));
}

#[test]
fn json_forms_keep_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        &dir,
        "list.json",
        r#"[{"name": "Russia", "aliases": ["Moscow"]}, {"name": "NATO"}]"#,
    );
    let object = write(
        &dir,
        "object.json",
        r#"{"Russia": ["Moscow"], "NATO": [], "EU": ["Brussels"]}"#,
    );
    let names = |path: &Path| -> Vec<String> {
        ActorSet::from_file(path)
            .unwrap()
            .actors()
            .iter()
            .map(|a| a.name.clone())
            .collect()
    };
    assert_eq!(names(&list), ["Russia", "NATO"]);
    assert_eq!(names(&object), ["Russia", "NATO", "EU"]);
    // Sniffed by content when the extension says nothing.
    let sniffed = write(&dir, "actors.conf", "\n  {\"NATO\": [\"the alliance\"]}");
    assert_eq!(names(&sniffed), ["NATO"]);
}

#[test]
fn text_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "actors.txt",
        "\u{feff}# Diplomatic news\n\nNATO: NATO | the alliance | North Atlantic Treaty Organization\n  # indented comment\nRussia: Moscow|the Kremlin\nUkraine\nEU:\n",
    );
    let actors = ActorSet::from_file(&path).unwrap();
    assert_eq!(
        actors.actors(),
        [
            Actor::new(
                "NATO",
                ["NATO", "the alliance", "North Atlantic Treaty Organization"]
            ),
            Actor::new("Russia", ["Russia", "Moscow", "the Kremlin"]),
            Actor::new("Ukraine", ["Ukraine"]),
            Actor::new("EU", ["EU"]),
        ]
    );
    // Windows line endings.
    let crlf = write(&dir, "crlf.txt", "NATO: the alliance\r\nRussia: Moscow\r\n");
    assert_eq!(
        ActorSet::from_file(&crlf).unwrap().actors()[1].aliases,
        ["Russia", "Moscow"]
    );
}

#[test]
fn text_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, needle) in [
        ("NATO: NATO\n\nRussia: Moscow ||\n", 3, "alias 2 is empty"),
        ("# c\n: Moscow\n", 2, "empty actor name"),
        (
            "NATO\nRussia\n# x\nnato: the alliance\n",
            4,
            "duplicate actor name",
        ),
        (
            "Russia: Moscow\nCity: moscow\n",
            2,
            "is also an alias of \"Russia\"",
        ),
        ("NATO: ---\n", 1, "no letter or digit"),
    ] {
        let path = write(&dir, "bad.txt", text);
        match ActorSet::from_file(&path) {
            Err(Error::Record {
                source_name,
                line: found,
                reason,
            }) => {
                assert_eq!(source_name, path.display().to_string());
                assert_eq!(found, line, "{text:?}: {reason}");
                assert!(reason.contains(needle), "{text:?}: {reason}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let path = write(&dir, "empty.txt", "# only comments\n\n");
    match ActorSet::from_file(&path) {
        Err(Error::InvalidConfig { path: p, key, .. }) => {
            assert_eq!(p, path);
            assert_eq!(key, "actors");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_errors_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    // Invalid actors: InvalidConfig with the actor's name, or the JSON path of an empty name.
    for (text, expected_key, needle) in [
        (
            r#"{"NATO": ["the alliance", ""]}"#,
            "NATO",
            "alias 2 is empty",
        ),
        (
            r#"[{"name": "NATO"}, {"name": " ", "aliases": ["x"]}]"#,
            "[1].name",
            "empty actor name",
        ),
        (r#"{"": ["x"]}"#, "", "empty actor name"),
        (
            r#"{"NATO": [], "Nato": []}"#,
            "Nato",
            "duplicate actor name",
        ),
        (
            r#"[{"name": "Russia", "aliases": ["Moscow"]}, {"name": "City", "aliases": ["Moscow"]}]"#,
            "City",
            "also an alias of \"Russia\"",
        ),
        ("[]", "actors", "no actors"),
        ("{}", "actors", "no actors"),
    ] {
        let path = write(&dir, "bad.json", text);
        match ActorSet::from_file(&path) {
            Err(Error::InvalidConfig {
                path: p,
                key,
                reason,
            }) => {
                assert_eq!(p, path);
                assert_eq!(key, expected_key, "{text}");
                assert!(reason.contains(needle), "{text}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Wrong shapes: Error::Json, with the file, line and column.
    for (text, needle) in [
        (
            "{\n  \"NATO\": \"the alliance\"\n}",
            "actor \"NATO\": expected a list of aliases",
        ),
        ("{\n  \"NATO\": [\"x\", 3]\n}", "is not a string"),
        (
            "[\n  {\"name\": \"NATO\", \"alias\": []}\n]",
            "unknown field `alias`",
        ),
        ("[\n  {\"aliases\": []}\n]", "missing field `name`"),
        ("[\"NATO\"]", "expected struct Actor"),
        ("42", "a list of actors"),
        ("{\"NATO\": [", "EOF"),
    ] {
        let path = write(&dir, "shape.json", text);
        match ActorSet::from_file(&path) {
            Err(e @ Error::Json { .. }) => {
                let message = e.to_string();
                assert!(
                    message.starts_with(&path.display().to_string()),
                    "{message}"
                );
                assert!(message.contains(needle), "{text}: {message}");
                assert!(message.contains("line "), "{message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    assert!(
        matches!(ActorSet::from_file(&missing), Err(Error::Io { path, .. }) if path == missing)
    );
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    assert!(matches!(
        ActorSet::from_file(&binary),
        Err(Error::Io { .. })
    ));
    assert!(error_text(&binary).starts_with(&binary.display().to_string()));
}
