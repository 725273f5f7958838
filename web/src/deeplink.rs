//! Deep links: `index.html?text=...&models=teacher_bert,custom_2x384&run=1&n_steps=20`
//! opens the page with that text, those models and options, and runs at once.

use astrid::explain::{Baseline, Method};

/// Explanation settings the page offers (and puts in its links).
#[derive(Debug, Clone, PartialEq)]
pub struct PageOptions {
    pub n_steps: usize,
    pub method: Method,
    pub baseline: Baseline,
    /// Show words (WordPiece pieces merged, attributions summed) instead of tokens.
    pub merge_words: bool,
}

impl Default for PageOptions {
    fn default() -> Self {
        Self {
            n_steps: 50,
            method: Method::GaussLegendre,
            baseline: Baseline::Zero,
            merge_words: true,
        }
    }
}

/// Where the computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// WebGPU when the browser has a hardware adapter, else the CPU (a software WebGPU
    /// adapter such as SwiftShader is far slower than WebAssembly on the same CPU).
    #[default]
    Auto,
    /// WebGPU whenever there is an adapter, software or not.
    WebGpu,
    Cpu,
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::WebGpu => "webgpu",
            BackendChoice::Cpu => "cpu",
        }
    }
}

/// Most interpolation steps the page accepts: more only costs time.
pub const MAX_STEPS: usize = 1000;

/// What the URL asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeepLink {
    pub text: Option<String>,
    pub models: Option<Vec<String>>,
    pub run: bool,
    pub options: PageOptions,
    pub backend: BackendChoice,
}

impl DeepLink {
    /// Reads decoded query pairs; unknown keys are ignored, bad values reported (one message
    /// each) and replaced by defaults, so a mistyped link still opens the page.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Self, Vec<String>) {
        let mut link = DeepLink::default();
        let mut problems = Vec::new();
        for (key, value) in pairs {
            match key {
                "text" => link.text = Some(value.to_string()),
                "models" => {
                    link.models = Some(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect(),
                    )
                }
                "run" => link.run = matches!(value, "1" | "true" | "yes"),
                "n_steps" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_STEPS).contains(&n) => link.options.n_steps = n,
                    _ => problems.push(format!(
                        "n_steps={value} in the link is not a whole number from 1 to {MAX_STEPS}; using {}",
                        link.options.n_steps
                    )),
                },
                "method" => match value.parse::<Method>() {
                    Ok(m) => link.options.method = m,
                    Err(e) => problems.push(format!("method in the link: {e}")),
                },
                "baseline" => match value.parse::<Baseline>() {
                    Ok(b) => link.options.baseline = b,
                    Err(e) => problems.push(format!("baseline in the link: {e}")),
                },
                "merge" => link.options.merge_words = !matches!(value, "0" | "false" | "no"),
                "backend" => match value {
                    "cpu" => link.backend = BackendChoice::Cpu,
                    "webgpu" => link.backend = BackendChoice::WebGpu,
                    "auto" => link.backend = BackendChoice::Auto,
                    other => problems.push(format!("backend={other} in the link: use auto, webgpu or cpu")),
                },
                _ => {}
            }
        }
        (link, problems)
    }

    /// The query string (with '?') that reproduces this state.
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(text) = &self.text {
            parts.push(format!("text={}", percent_encode(text)));
        }
        if let Some(models) = &self.models {
            parts.push(format!("models={}", percent_encode(&models.join(","))));
        }
        let o = &self.options;
        parts.push(format!("n_steps={}", o.n_steps));
        parts.push(format!("method={}", o.method.name()));
        parts.push(format!("baseline={}", o.baseline.name()));
        parts.push(format!("merge={}", u8::from(o.merge_words)));
        if self.backend != BackendChoice::Auto {
            parts.push(format!("backend={}", self.backend.name()));
        }
        if self.run {
            parts.push("run=1".into());
        }
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (UTF-8 bytes).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_sets_text_models_options_and_run() {
        let (link, problems) = DeepLink::from_pairs([
            ("text", "The court & the state"),
            ("models", "teacher_bert, custom_2x384,"),
            ("run", "1"),
            ("n_steps", "20"),
            ("method", "riemann_trapezoid"),
            ("baseline", "pad"),
            ("merge", "0"),
            ("backend", "cpu"),
            ("utm_source", "x"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(link.text.as_deref(), Some("The court & the state"));
        assert_eq!(
            link.models,
            Some(vec!["teacher_bert".to_string(), "custom_2x384".to_string()])
        );
        assert!(link.run);
        assert_eq!(link.options.n_steps, 20);
        assert_eq!(link.options.method, Method::RiemannTrapezoid);
        assert_eq!(link.options.baseline, Baseline::Pad);
        assert!(!link.options.merge_words);
        assert_eq!(link.backend, BackendChoice::Cpu);
        let (link, _) = DeepLink::from_pairs([("backend", "webgpu")]);
        assert_eq!(link.backend, BackendChoice::WebGpu);
        assert!(link.to_query().contains("backend=webgpu"));
        assert!(!DeepLink::default().to_query().contains("backend"));
    }

    #[test]
    fn bad_values_are_reported_and_replaced_by_defaults() {
        let (link, problems) = DeepLink::from_pairs([
            ("n_steps", "0"),
            ("method", "simpson"),
            ("baseline", "x"),
            ("backend", "tpu"),
        ]);
        assert_eq!(link.options, PageOptions::default());
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("n_steps=0"));
        assert!(problems[1].contains("simpson") && problems[1].contains("gausslegendre"));
    }

    #[test]
    fn the_query_round_trips() {
        let link = DeepLink {
            text: Some("Ünïcode, spaces & ?=#".into()),
            models: Some(vec!["teacher_bert".into(), "tinybert".into()]),
            run: true,
            options: PageOptions {
                n_steps: 7,
                method: Method::RiemannLeft,
                baseline: Baseline::Mask,
                merge_words: false,
            },
            backend: BackendChoice::Cpu,
        };
        let query = link.to_query();
        assert!(!query[1..].contains(' ') && !query[1..].contains('#') && !query[1..].contains('?'));
        // Decode as a browser's URLSearchParams would.
        let pairs: Vec<(String, String)> = query[1..]
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), percent_decode(v))
            })
            .collect();
        let (back, problems) = DeepLink::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(problems.is_empty());
        assert_eq!(back, link);
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
