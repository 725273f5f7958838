//! `trainer explain` against Captum: the fixture's attributions were computed by PyTorch +
//! Captum (`tests/reference/ig_oracle.py`, via `tests/fixtures/make_tiny_bert.py`).

use astrid_e2e::{cosine, fixture, floats, max_rel_diff, trainer, trainer_json};

#[test]
fn explain_matches_captum_on_the_fixture() {
    let model = fixture("tiny_bert");
    let oracle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_bert_oracle.json")).unwrap()).unwrap();
    let cases = oracle["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let mut args = vec!["explain", "--model", model.to_str().unwrap(), "--text", text, "--json"];
        let extra: Vec<&str> = case["cli_args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        args.extend(extra);
        let ours = trainer_json(&args);
        assert_eq!(
            ours["input_ids"], case["input_ids"],
            "{text}: token ids differ from Hugging Face's tokenizer"
        );
        assert_eq!(ours["tokens"], case["tokens"], "{text}");
        assert_eq!(ours["target"], case["target"], "{text}");
        let (a, b) = (floats(&ours["attributions"]), floats(&case["attributions"]));
        let (cos, diff) = (cosine(&a, &b), max_rel_diff(&a, &b));
        assert!(
            cos >= 0.9999 && diff <= 1e-4,
            "{text} {:?}: cosine {cos}, max relative difference {diff}",
            case["cli_args"]
        );
        let delta = ours["convergence_delta"].as_f64().unwrap();
        assert!(
            (delta - case["convergence_delta"].as_f64().unwrap()).abs() < 1e-4,
            "{text}: delta {delta} vs {}",
            case["convergence_delta"]
        );
        for (p, q) in floats(&ours["probs"]).iter().zip(floats(&case["probs"])) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}

#[test]
fn every_option_is_accepted_and_reported() {
    let model = fixture("tiny_bert");
    let m = model.to_str().unwrap();
    let text = "The court reversed the judgment.";
    let base = trainer_json(&["explain", "--model", m, "--text", text, "--json"]);
    assert_eq!(base["options"]["n_steps"], 50);
    assert_eq!(base["options"]["method"], "gausslegendre");
    assert_eq!(base["gradient_evaluations"], 50);
    // Adaptive IG: whole 15-point panels, the delta within the tolerance, the fixed rule's
    // attributions.
    let adaptive = trainer_json(&[
        "explain",
        "--model",
        m,
        "--text",
        text,
        "--json",
        "--method",
        "adaptive",
        "--tolerance",
        "1e-5",
    ]);
    let evaluations = adaptive["gradient_evaluations"].as_u64().unwrap();
    assert!(evaluations >= 15 && evaluations.is_multiple_of(15), "{evaluations}");
    assert!(adaptive["convergence_delta"].as_f64().unwrap().abs() <= 1e-5 + 1e-7);
    assert!(cosine(&floats(&adaptive["attributions"]), &floats(&base["attributions"])) > 0.9999);
    assert_eq!(adaptive["options"]["tolerance"], 1e-5);
    let chunked = trainer_json(&[
        "explain",
        "--model",
        m,
        "--text",
        text,
        "--json",
        "--internal-batch-size",
        "7",
    ]);
    assert!(max_rel_diff(&floats(&chunked["attributions"]), &floats(&base["attributions"])) < 1e-5);
    for baseline in ["pad", "mask", "uniform"] {
        let r = trainer_json(&[
            "explain",
            "--model",
            m,
            "--text",
            text,
            "--json",
            "--baseline",
            baseline,
        ]);
        let attr = floats(&r["attributions"]);
        assert_eq!(
            (attr[0], *attr.last().unwrap()),
            (0.0, 0.0),
            "{baseline}: [CLS]/[SEP] keep their embedding"
        );
    }
    let s = trainer_json(&[
        "explain",
        "--model",
        m,
        "--text",
        text,
        "--json",
        "--attribution",
        "saliency",
    ]);
    assert!(floats(&s["attributions"]).iter().all(|&x| x > 0.0));
    assert!(s["convergence_delta"].is_null());
    let truncated = trainer_json(&["explain", "--model", m, "--text", text, "--json", "--max-length", "5"]);
    assert_eq!(truncated["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(truncated["tokens"][4], "[SEP]");
    assert_eq!(truncated["truncated"], true);

    let table = trainer(&["explain", "--model", m, "--text", text]);
    let stdout = String::from_utf8(table.stdout).unwrap();
    assert!(table.status.success());
    assert!(
        stdout.contains("reversed") && stdout.contains("convergence delta"),
        "{stdout}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let model = fixture("tiny_bert");
    let m = model.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["explain", "--model", "no/such/dir", "--text", "x"], "no/such/dir"),
        (&["explain", "--model", m, "--text", "   "], "empty"),
        (
            &["explain", "--model", m, "--text", "x", "--method", "simpson"],
            "riemann_trapezoid",
        ),
        (
            &["explain", "--model", m, "--text", "x", "--baseline", "noise"],
            "zero, pad, mask",
        ),
        (&["explain", "--model", m, "--text", "x", "--target", "5"], "target"),
        (
            &[
                "explain",
                "--model",
                m,
                "--text",
                "x",
                "--method",
                "adaptive",
                "--max-steps",
                "10",
            ],
            "--max-steps 10",
        ),
        (
            &[
                "explain",
                "--model",
                m,
                "--text",
                "x",
                "--method",
                "adaptive",
                "--tolerance",
                "0",
            ],
            "--tolerance 0",
        ),
        (
            &["explain", "--model", m, "--text", "x", "--backend", "tpu"],
            "possible values: cpu, wgpu",
        ),
    ];
    for (args, needle) in cases {
        let out = trainer(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr does not mention '{needle}':\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    }
}
