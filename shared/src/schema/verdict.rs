//! What the decision rule made of a model, as `results.json` and the bundle store it.

use serde::{Deserialize, Serialize};

/// What the decision rule made of a model. Stored as the sentence the report shows
/// ("keep", "drop: accuracy 0.600 < 0.7, …"), so results files and bundles read the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Verdict {
    /// No decision recorded.
    #[default]
    Undecided,
    /// The reference every student is compared with.
    Teacher,
    /// Passes the rule.
    Keep,
    /// Passes the rule and is the smallest that does.
    Recommended,
    /// Fails the rule, for these reasons.
    Drop(Vec<String>),
}

const TEACHER_VERDICT: &str = "teacher (reference)";
const KEEP_VERDICT: &str = "keep";
const RECOMMENDED_VERDICT: &str = "keep (recommended: smallest that passes)";
const DROP_PREFIX: &str = "drop: ";

impl Verdict {
    /// Kept by the rule (recommended or not).
    pub fn keeps(&self) -> bool {
        matches!(self, Verdict::Keep | Verdict::Recommended)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Undecided => Ok(()),
            Verdict::Teacher => f.write_str(TEACHER_VERDICT),
            Verdict::Keep => f.write_str(KEEP_VERDICT),
            Verdict::Recommended => f.write_str(RECOMMENDED_VERDICT),
            Verdict::Drop(reasons) => write!(f, "{DROP_PREFIX}{}", reasons.join(", ")),
        }
    }
}

impl From<Verdict> for String {
    fn from(v: Verdict) -> String {
        v.to_string()
    }
}

impl From<String> for Verdict {
    fn from(s: String) -> Verdict {
        match s.as_str() {
            TEACHER_VERDICT => Verdict::Teacher,
            KEEP_VERDICT => Verdict::Keep,
            RECOMMENDED_VERDICT => Verdict::Recommended,
            _ => match s.strip_prefix(DROP_PREFIX) {
                Some(reasons) => Verdict::Drop(reasons.split(", ").map(str::to_string).collect()),
                None => Verdict::Undecided,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_back_as_written() {
        for v in [
            Verdict::Teacher,
            Verdict::Keep,
            Verdict::Recommended,
            Verdict::Drop(vec!["accuracy 0.600 < 0.7".into(), "similarity 0.500 < 0.8".into()]),
        ] {
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<Verdict>(&text).unwrap(), v, "{text}");
        }
        assert_eq!(Verdict::Drop(vec!["a".into(), "b".into()]).to_string(), "drop: a, b");
        assert!(Verdict::Recommended.keeps() && !Verdict::Teacher.keeps());
    }
}
