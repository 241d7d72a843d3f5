//! The keywords a texted reply may start with — leave, join, help — in the languages of seed
//! 004's command table, plus the carrier-standard opt-out and opt-in words Twilio honours.
//!
//! Parsing follows seed 004's command rule, `^(CMD)[.|!]*\s?(payload)`: a keyword matches only
//! at the start of the trimmed message, without regard to case (Unicode lower-casing, so
//! `ADIÓS`, `adiós` and `Adiós` are one word, and `TSCHÜẞ` is `tschüß`); the longest keyword
//! that matches wins (`STOPALL` over `STOP`, `QUITTER` over `QUIT`, `INFORMATION` over `INFO`);
//! dots, bars and bangs after it are dropped, then one optional space, and the rest is the
//! payload. The language the keyword matched in is the language of the answer; the partially
//! supported languages (Burmese, Swahili, Chinese) answer in English.
//!
//! # When a keyword acts ([`Keyword::acts`])
//! Seed 004's leave, join and help take no payload: `HELP ME` is not HELP. Herald keeps that
//! for join and help (a chatty reply must not be answered as a command), and widens it for
//! leave: an opt-out word followed by a space or punctuation and more words (`STOP please`,
//! `stop, no more`) still opts out, because carriers ask senders to honour any reasonable
//! opt-out request and a wrong opt-out costs one START, while a missed one keeps texting
//! someone who asked us to stop. A leave word glued to more letters (`STOPPING`, `ending`) is
//! not one.

/// What a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop all SMS from Herald to this number.
    Leave,
    /// Lift an earlier opt-out.
    Join,
    /// Who is writing and how to stop.
    Help,
}

impl Action {
    /// For metrics: `stop`, `start`, `help`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Leave => "stop",
            Action::Join => "start",
            Action::Help => "help",
        }
    }
}

/// A language Herald answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Es,
    Fr,
    De,
}

impl Language {
    /// The code of the answer's strings table (`templates/text/compliance.toml`).
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Fr => "fr",
            Language::De => "de",
        }
    }
}

/// Every keyword, as seed 004 writes them (the matcher lower-cases). English first, so that a
/// word shared by several languages (`INFO`) answers in English.
const KEYWORDS: &[(Action, Language, &[&str])] = &[
    (
        Action::Leave,
        Language::En,
        &[
            "GOODBYE",
            "LEAVE",
            "STOP",
            "UNSUBSCRIBE",
            // Carrier-standard opt-out words (Twilio's default opt-out keywords).
            "STOPALL",
            "CANCEL",
            "END",
            "QUIT",
            "OPTOUT",
            "REVOKE",
            // Seed 004's partially supported languages, answered in English: Swahili,
            // Chinese, Burmese.
            "KWAHERI",
            "再见",
            "拜拜",
            "နှုတ်ဆက်ပါတယ်",
        ],
    ),
    (Action::Leave, Language::Es, &["ADIÓS", "ADIOS"]),
    (
        Action::Leave,
        Language::Fr,
        &["AUREVOIR", "ADIEU", "QUITTER"],
    ),
    (
        Action::Leave,
        Language::De,
        &["TSCHÜSS", "TSCHUESS", "TSCHÜß", "TSCHUSS", "TSCHUß", "CIAO"],
    ),
    (
        Action::Join,
        Language::En,
        &[
            "HELLO",
            "JOIN",
            // Carrier-standard opt-in words.
            "START",
            "UNSTOP",
            "YES",
            "MAMBO",
            "HABARI",
            "你好",
            "ချိတ်ဆက်မည်",
        ],
    ),
    (Action::Join, Language::Es, &["HOLA"]),
    (
        Action::Join,
        Language::Fr,
        &["SALUT", "BONJOUR", "REJOINDRE", "ALLÔ", "ALLO"],
    ),
    (Action::Join, Language::De, &["HALLO"]),
    (Action::Help, Language::En, &["HELP", "INFO", "အကူအညီရယူမည်"]),
    (Action::Help, Language::Es, &["AYUDA", "INFO"]),
    (
        Action::Help,
        Language::Fr,
        &["AIDE", "INFO", "INFOS", "INFORMATION", "INFORMATIONS"],
    ),
    (Action::Help, Language::De, &["HILFE", "INFO"]),
];

/// A keyword found at the start of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyword<'a> {
    pub action: Action,
    pub language: Language,
    /// The keyword as the table writes it.
    pub word: &'static str,
    /// What followed it, trimmed.
    pub payload: &'a str,
    /// Whether the keyword ended at a word boundary: the end, a space or punctuation, not
    /// another letter or digit.
    separated: bool,
}

impl Keyword<'_> {
    /// Whether Herald acts on this message (see the module documentation): any keyword alone,
    /// or an opt-out word followed by more words.
    pub fn acts(&self) -> bool {
        self.payload.is_empty() || (self.action == Action::Leave && self.separated)
    }
}

/// The keyword `message` starts with, if any.
pub fn parse(message: &str) -> Option<Keyword<'_>> {
    let text = message.trim();
    let mut best: Option<(usize, Action, Language, &'static str, &str)> = None;
    for (action, language, words) in KEYWORDS {
        for word in *words {
            let Some(rest) = strip_prefix_caseless(text, word) else {
                continue;
            };
            let length = word.chars().count();
            if best.is_none_or(|(longest, ..)| length > longest) {
                best = Some((length, *action, *language, word, rest));
            }
        }
    }
    let (_, action, language, word, rest) = best?;
    let after_marks = rest.trim_start_matches(['.', '|', '!']);
    let separated = !rest.starts_with(char::is_alphanumeric);
    Some(Keyword {
        action,
        language,
        word,
        payload: after_marks.trim(),
        separated,
    })
}

/// `text` after `word` when `text` starts with `word`, compared after Unicode lower-casing
/// both, char by char, so the rest is a slice of `text` as it was written.
fn strip_prefix_caseless<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let mut wanted = word.chars().flat_map(char::to_lowercase).peekable();
    for (at, c) in text.char_indices() {
        for lower in c.to_lowercase() {
            if wanted.next() != Some(lower) {
                return None;
            }
        }
        if wanted.peek().is_none() {
            return Some(&text[at + c.len_utf8()..]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts_as(message: &str) -> Option<(Action, Language)> {
        parse(message)
            .filter(Keyword::acts)
            .map(|k| (k.action, k.language))
    }

    #[test]
    fn every_keyword_alone_acts_in_its_language_whatever_its_case() {
        for (action, language, words) in KEYWORDS {
            for word in *words {
                // INFO is in four languages' tables; the first, English, answers.
                let language = if *word == "INFO" {
                    Language::En
                } else {
                    *language
                };
                let lower = word.to_lowercase();
                let mut title = lower.chars();
                let title: String = title
                    .next()
                    .map(|c| c.to_uppercase().chain(title).collect())
                    .unwrap_or_default();
                for spelling in [
                    word.to_string(),
                    lower.clone(),
                    title,
                    format!("  {word}!\n"),
                ] {
                    assert_eq!(
                        acts_as(&spelling),
                        Some((*action, language)),
                        "{spelling:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn seed_004_leave_join_and_help_words_are_recognised_per_language() {
        use Action::{Help, Join, Leave};
        use Language::{De, En, Es, Fr};
        let cases = [
            ("STOP", Leave, En),
            ("Unsubscribe", Leave, En),
            ("goodbye", Leave, En),
            ("Kwaheri", Leave, En),
            ("再见", Leave, En),
            ("拜拜", Leave, En),
            ("adiós", Leave, Es),
            ("ADIÓS", Leave, Es),
            ("Adios", Leave, Es),
            ("AUREVOIR", Leave, Fr),
            ("adieu", Leave, Fr),
            ("Quitter", Leave, Fr),
            ("tschüss", Leave, De),
            ("TSCHÜSS", Leave, De),
            ("Tschüß", Leave, De),
            ("TSCHÜẞ", Leave, De),
            ("tschuess", Leave, De),
            ("TSCHUSS", Leave, De),
            ("tschuß", Leave, De),
            ("Ciao", Leave, De),
            ("hello", Join, En),
            ("JOIN", Join, En),
            ("Start", Join, En),
            ("unstop", Join, En),
            ("yes", Join, En),
            ("Mambo", Join, En),
            ("habari", Join, En),
            ("你好", Join, En),
            ("Hola", Join, Es),
            ("salut", Join, Fr),
            ("Bonjour", Join, Fr),
            ("rejoindre", Join, Fr),
            ("allô", Join, Fr),
            ("ALLÔ", Join, Fr),
            ("allo", Join, Fr),
            ("Hallo", Join, De),
            ("help", Help, En),
            ("Ayuda", Help, Es),
            ("aide", Help, Fr),
            ("Hilfe", Help, De),
            ("info", Help, En),
            ("Infos", Help, Fr),
            ("information", Help, Fr),
        ];
        for (text, action, language) in cases {
            assert_eq!(acts_as(text), Some((action, language)), "{text:?}");
        }
        // Seed 004 has AUREVOIR in one word only.
        assert_eq!(acts_as("au revoir"), None);
    }

    #[test]
    fn the_longest_keyword_wins() {
        let k = parse("STOPALL").unwrap();
        assert_eq!((k.word, k.payload), ("STOPALL", ""));
        let k = parse("quitter").unwrap();
        assert_eq!((k.word, k.language), ("QUITTER", Language::Fr));
        let k = parse("Quit").unwrap();
        assert_eq!((k.word, k.language), ("QUIT", Language::En));
        let k = parse("INFORMATIONS").unwrap();
        assert_eq!((k.word, k.language), ("INFORMATIONS", Language::Fr));
        let k = parse("tschüss").unwrap();
        assert_eq!(k.word, "TSCHÜSS");
    }

    #[test]
    fn the_payload_follows_marks_and_one_optional_space_as_in_seed_004() {
        let k = parse("HELPME").unwrap();
        assert_eq!((k.action, k.payload), (Action::Help, "ME"));
        assert!(!k.acts(), "HELP takes no payload");
        let k = parse("help!!. ").unwrap();
        assert_eq!(k.payload, "");
        assert!(k.acts());
        let k = parse("Stop.|! sending these").unwrap();
        assert_eq!(k.payload, "sending these");
        assert!(k.acts());
    }

    #[test]
    fn an_opt_out_word_acts_before_more_words_but_not_inside_a_longer_word() {
        for text in [
            "STOP please",
            "stop, no more",
            "Cancel!! thanks",
            "adiós amigos",
            "Tschüss und danke",
        ] {
            assert_eq!(
                parse(text).filter(Keyword::acts).map(|k| k.action),
                Some(Action::Leave),
                "{text:?}"
            );
        }
        for text in ["Stopping by later", "ending soon", "Quitting", "cancelled?"] {
            assert_eq!(parse(text).filter(Keyword::acts), None, "{text:?}");
        }
    }

    #[test]
    fn join_and_help_with_more_words_do_not_act() {
        for text in [
            "Hello, is this the garden group?",
            "hola amigos",
            "yes please",
            "help me",
            "Info about Saturday?",
        ] {
            assert_eq!(parse(text).filter(Keyword::acts), None, "{text:?}");
        }
    }

    #[test]
    fn a_keyword_only_matches_at_the_start() {
        for text in ["please STOP", "I said stop", "", "   ", "¡hola!", "x"] {
            assert_eq!(parse(text).filter(Keyword::acts), None, "{text:?}");
        }
    }

    #[test]
    fn caseless_matching_keeps_the_rest_as_written() {
        assert_eq!(
            strip_prefix_caseless("ADIÓS Amigos", "adiós"),
            Some(" Amigos")
        );
        assert_eq!(strip_prefix_caseless("Tschü", "TSCHÜSS"), None);
        // The dotted capital I lower-cases to two chars; a word wanting one of them fails.
        assert_eq!(strip_prefix_caseless("İ", "i"), None);
    }
}
