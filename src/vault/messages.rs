//! The texts the vault sends: verification, transfer, welcome and sign-in-instead emails, the
//! SMS code, Telegram replies, and the answers to STOP/START/HELP keywords. Templates live in
//! `templates/` (minijinja, embedded at build time); an email template's first line is its
//! subject. The keyword answers are one strings file, `templates/text/compliance.toml`, with a
//! table per language (`en`, `es`, `fr`, `de`, the languages of seed 004's keyword table).

use std::collections::BTreeMap;

use minijinja::{Environment, context};

/// The keyword answers, by language and then by key.
const COMPLIANCE: &str = include_str!("../../templates/text/compliance.toml");
/// The language used when a keyword's language has no table (and the tables' key reference).
const DEFAULT_LANGUAGE: &str = "en";

/// An answer to what a recipient told Herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplianceReply {
    /// An SMS opt-out (STOP and its kin) was recorded.
    SmsStopped,
    /// An SMS opt-in (START, JOIN…) was recorded.
    SmsStarted,
    /// HELP: who is writing, how to stop, where to manage.
    SmsHelp,
    /// A Telegram chat sent /stop.
    TelegramStopped,
    /// A stopped Telegram chat sent /start again.
    TelegramResumed,
}

impl ComplianceReply {
    pub const ALL: [ComplianceReply; 5] = [
        Self::SmsStopped,
        Self::SmsStarted,
        Self::SmsHelp,
        Self::TelegramStopped,
        Self::TelegramResumed,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::SmsStopped => "sms_stopped",
            Self::SmsStarted => "sms_started",
            Self::SmsHelp => "sms_help",
            Self::TelegramStopped => "telegram_stopped",
            Self::TelegramResumed => "telegram_resumed",
        }
    }
}

/// A rendered email.
pub struct Email {
    pub subject: String,
    pub text: String,
}

pub struct Messages {
    env: Environment<'static>,
    compliance: BTreeMap<String, BTreeMap<String, String>>,
}

/// Every template, by name, embedded so the binary needs no files beside it.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "email/_footer.txt",
        include_str!("../../templates/email/_footer.txt"),
    ),
    (
        "email/verify.txt",
        include_str!("../../templates/email/verify.txt"),
    ),
    (
        "email/transfer.txt",
        include_str!("../../templates/email/transfer.txt"),
    ),
    (
        "email/welcome.txt",
        include_str!("../../templates/email/welcome.txt"),
    ),
    (
        "email/confirm_subscription.txt",
        include_str!("../../templates/email/confirm_subscription.txt"),
    ),
    (
        "email/sign_in_instead.txt",
        include_str!("../../templates/email/sign_in_instead.txt"),
    ),
    (
        "text/sms_code.txt",
        include_str!("../../templates/text/sms_code.txt"),
    ),
    (
        "text/telegram_paired.txt",
        include_str!("../../templates/text/telegram_paired.txt"),
    ),
    (
        "text/telegram_unknown.txt",
        include_str!("../../templates/text/telegram_unknown.txt"),
    ),
    (
        "text/telegram_expired.txt",
        include_str!("../../templates/text/telegram_expired.txt"),
    ),
    (
        "text/telegram_group.txt",
        include_str!("../../templates/text/telegram_group.txt"),
    ),
];

impl Messages {
    pub fn new() -> Self {
        let mut env = Environment::new();
        // Plain-text templates: nothing to escape, and undefined variables are a bug.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
        // Fixed at build time and checked by the tests below, so a failure is a bug.
        let compliance: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(COMPLIANCE).unwrap_or_else(|e| panic!("compliance.toml: {e}"));
        Self { env, compliance }
    }

    /// The answer `reply` in `lang` (English when Herald has no words for `lang`), with
    /// `{url}` replaced by `url`.
    pub fn compliance(&self, reply: ComplianceReply, lang: &str, url: &str) -> String {
        let table = self
            .compliance
            .get(lang)
            .or_else(|| self.compliance.get(DEFAULT_LANGUAGE));
        table
            .and_then(|t| t.get(reply.key()))
            .map(|text| text.replace("{url}", url.trim_end_matches('/')))
            .unwrap_or_else(|| panic!("compliance.toml has no {}", reply.key()))
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> String {
        // Templates are fixed at build time and covered by tests, so a failure is a bug.
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| panic!("template {name} failed: {e}"))
    }

    fn email(&self, name: &str, ctx: minijinja::Value) -> Email {
        let rendered = self.render(name, ctx);
        let (subject, body) = rendered.split_once('\n').unwrap_or((&rendered, ""));
        Email {
            subject: subject.trim().to_string(),
            text: body.trim_start_matches('\n').to_string(),
        }
    }

    pub fn verify_email(&self, account: &str, link: &str, code: &str, manage: &str) -> Email {
        self.email("email/verify.txt", context! { account, link, code, manage })
    }

    pub fn transfer_email(
        &self,
        holder: &str,
        requester: &str,
        link: &str,
        code: &str,
        manage: &str,
    ) -> Email {
        self.email(
            "email/transfer.txt",
            context! { holder, requester, link, code, manage },
        )
    }

    pub fn welcome(&self, community: &str, manage: &str) -> Email {
        self.email("email/welcome.txt", context! { community, manage })
    }

    pub fn confirm_subscription(&self, community: &str, link: &str, manage: &str) -> Email {
        self.email(
            "email/confirm_subscription.txt",
            context! { community, link, manage },
        )
    }

    pub fn sign_in_instead(&self, community: &str, manage: &str) -> Email {
        self.email("email/sign_in_instead.txt", context! { community, manage })
    }

    pub fn sms_code(&self, code: &str, minutes: i64) -> String {
        self.render("text/sms_code.txt", context! { code, minutes })
            .trim()
            .to_string()
    }

    pub fn telegram_paired(&self) -> String {
        self.render("text/telegram_paired.txt", context! {})
            .trim()
            .to_string()
    }

    pub fn telegram_unknown_link(&self) -> String {
        self.render("text/telegram_unknown.txt", context! {})
            .trim()
            .to_string()
    }

    pub fn telegram_expired_link(&self) -> String {
        self.render("text/telegram_expired.txt", context! {})
            .trim()
            .to_string()
    }

    pub fn telegram_group_refused(&self) -> String {
        self.render("text/telegram_group.txt", context! {})
            .trim()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANAGE: &str = "https://h/manage?token=t";

    #[test]
    fn every_email_has_a_subject_the_manage_link_and_the_word_unsubscribe() {
        let m = Messages::new();
        for email in [
            m.verify_email("did:plc:a", "https://h/verify?token=t", "123456", MANAGE),
            m.transfer_email("did:plc:a", "did:plc:b", "https://h/v", "123456", MANAGE),
            m.welcome("Gardeners", MANAGE),
            m.confirm_subscription("Gardeners", "https://h/c", MANAGE),
            m.sign_in_instead("Gardeners", MANAGE),
        ] {
            assert!(!email.subject.is_empty());
            assert!(!email.subject.contains('\n'));
            assert!(email.text.contains(MANAGE), "{}", email.text);
            assert!(email.text.to_lowercase().contains("unsubscribe"));
            assert!(
                email.text.contains("https://h/unsubscribe?token=t"),
                "{}",
                email.text
            );
        }
    }

    #[test]
    fn the_verification_email_carries_link_code_and_expiry_line() {
        let m = Messages::new();
        let e = m.verify_email(
            "did:plc:a",
            "https://h/verify?token=t",
            "042424",
            "https://h/m",
        );
        assert_eq!(e.subject, "Confirm your email address");
        assert!(e.text.contains("https://h/verify?token=t"));
        assert!(e.text.contains("042424"));
        assert!(e.text.contains("This link expires in 2 hours."));
    }

    #[test]
    fn the_transfer_email_names_both_accounts() {
        let m = Messages::new();
        let e = m.transfer_email("did:plc:a", "did:plc:b", "L", "1", "M");
        assert!(
            e.text
                .contains("transfer your email from Account did:plc:a to Account did:plc:b")
        );
    }

    #[test]
    fn the_sms_code_says_how_to_stop() {
        let text = Messages::new().sms_code("123456", 10);
        assert!(text.contains("123456") && text.contains("STOP"));
    }

    #[test]
    fn every_language_answers_every_keyword_and_names_the_way_back() {
        let m = Messages::new();
        let english: Vec<_> = m.compliance[DEFAULT_LANGUAGE].keys().collect();
        for (lang, table) in &m.compliance {
            assert_eq!(table.keys().collect::<Vec<_>>(), english, "[{lang}] keys");
        }
        for lang in ["en", "es", "fr", "de"] {
            for reply in ComplianceReply::ALL {
                let text = m.compliance(reply, lang, "https://h.example/");
                assert!(
                    !text.is_empty() && !text.contains('{'),
                    "{lang} {reply:?}: {text}"
                );
            }
            let stopped = m.compliance(ComplianceReply::SmsStopped, lang, "https://h.example");
            assert!(stopped.contains("START"), "{lang}: {stopped}");
            let started = m.compliance(ComplianceReply::SmsStarted, lang, "https://h.example");
            assert!(started.contains("STOP"), "{lang}: {started}");
            let help = m.compliance(ComplianceReply::SmsHelp, lang, "https://h.example/");
            assert!(
                help.contains("Herald") && help.contains("STOP"),
                "{lang}: {help}"
            );
            assert!(help.ends_with("https://h.example"), "{lang}: {help}");
            let stopped = m.compliance(ComplianceReply::TelegramStopped, lang, "");
            assert!(stopped.contains("/start"), "{lang}: {stopped}");
        }
    }

    #[test]
    fn an_unknown_language_answers_in_english() {
        let m = Messages::new();
        assert_eq!(
            m.compliance(ComplianceReply::SmsStopped, "sw", "u"),
            "You have been unsubscribed from Herald and will receive no more messages. \
             Reply START to resubscribe."
        );
    }
}
