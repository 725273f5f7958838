//! One way to collect what is wrong with a command's settings, so that one message lists
//! every problem before anything runs.

/// The problems found so far, one line each.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `problem` when `ok` is false.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Records the error of `result` (its whole chain, on one line) and returns its value.
    pub fn take<T>(&mut self, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.push(format!("{e:#}"));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn lines(&self) -> &[String] {
        &self.0
    }

    /// `Ok` when nothing was found; otherwise one error listing every problem.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => anyhow::bail!("{}; nothing was written", self.0[0]),
            _ => anyhow::bail!(
                "these options cannot be used (nothing was written):\n  {}",
                self.0.join("\n  ")
            ),
        }
    }
}

/// `value` is a finite number within `range`.
pub fn finite_in(value: f64, range: std::ops::RangeInclusive<f64>) -> bool {
    value.is_finite() && range.contains(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_problem_is_one_line_and_several_are_listed() {
        assert!(Problems::new().finish().is_ok());
        let mut p = Problems::new();
        p.check(false, || "--a 0: no".into());
        assert_eq!(p.finish().unwrap_err().to_string(), "--a 0: no; nothing was written");
        let mut p = Problems::new();
        p.check(false, || "--a".into());
        p.check(true, || "--b".into());
        assert_eq!(p.take::<()>(Err(anyhow::anyhow!("--c"))), None);
        let err = p.finish().unwrap_err().to_string();
        assert!(err.contains("\n  --a\n  --c") && !err.contains("--b"), "{err}");
    }
}
