//! What the page draws, one component per panel.

use astrid::explain::{Baseline, Method};
use astrid::format::{self, optional};
use astrid::heat::{colour, row_scale};
use astrid::schema::{Calibration, ModelResult};
use leptos::prelude::*;

use super::actions::{EvidenceAction, ExplainAction};
use super::state;
use super::state::BackendKind;
use crate::deeplink::MAX_STEPS;
use crate::outcome::{ModelOutcome, Unit};

#[component]
pub(crate) fn BackendBadge() -> impl IntoView {
    let state = state();
    move || match state.backend.get() {
        None => view! { <p class="badge pending">"Starting the compute backend…"</p> }.into_any(),
        Some(info) if info.kind == BackendKind::WebGpu => view! {
            <p class="badge webgpu" id="backend">
                "Backend: WebGPU"
                {info.detail.map(|d| format!(" — {d}"))}
            </p>
        }
        .into_any(),
        Some(info) => view! {
            <p class="badge cpu" id="backend">
                "Backend: CPU (WebAssembly, one thread)"
                {info.detail.map(|d| format!(" — {d}"))}
            </p>
        }
        .into_any(),
    }
}

#[component]
pub(crate) fn BundleError() -> impl IntoView {
    let state = state();
    move || {
        state
            .bundle_error
            .get()
            .map(|e| view! { <div class="error" role="alert" id="bundle-error">{e}</div> })
    }
}

fn file_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

fn params_text(params: Option<u64>) -> String {
    params.map_or("—".into(), format::params)
}

#[component]
pub(crate) fn ModelPicker() -> impl IntoView {
    let state = state();
    move || {
        let Some(manifest) = state.manifest.get() else {
            let text = if state.bundle_error.get().is_some() {
                "No models: the bundle did not load (see above)."
            } else {
                "Loading the bundle…"
            };
            return view! { <p class="muted">{text}</p> }.into_any();
        };
        let rows = manifest
            .models
            .into_iter()
            .map(|m| {
                let name = m.name.clone();
                let teacher = m.is_teacher();
                let checked = {
                    let name = name.clone();
                    move || teacher || state.selected.get().contains(&name)
                };
                let toggle = {
                    let name = name.clone();
                    move |ev| {
                        let on = event_target_checked(&ev);
                        state.selected.update(|s| {
                            s.retain(|n| n != &name);
                            if on {
                                s.push(name.clone());
                            }
                        });
                    }
                };
                let cached = {
                    let name = name.clone();
                    move || state.cached.get().contains(&name).then_some(" · cached")
                };
                view! {
                    <label class="model">
                        <input type="checkbox" name="model" value=name.clone() disabled=teacher
                            prop:checked=checked on:change=toggle/>
                        <span class="model-name">{name.clone()}</span>
                        <span class="muted">
                            {if teacher { "teacher" } else { "student" }}
                            {m.shape().map(|s| format!(" · {s}"))}
                            {format!(" · {} params · acc {} · similarity {} · {}",
                                params_text(m.params), optional(m.accuracy, 3), optional(m.similarity, 3),
                                file_size(m.download_size()))}
                            {cached}
                        </span>
                    </label>
                }
            })
            .collect_view();
        view! { <div class="models">{rows}</div> }.into_any()
    }
}

#[component]
pub(crate) fn Downloads() -> impl IntoView {
    let state = state();
    move || {
        let downloads = state.downloads.get();
        if downloads.is_empty() {
            return None;
        }
        let (count, finished) = (downloads.len(), downloads.iter().all(|d| d.loaded >= d.total));
        let total: u64 = downloads.iter().map(|d| d.total).sum();
        let from_cache = downloads.iter().filter(|d| d.cached).count();
        let rows = downloads
            .into_iter()
            .map(|d| {
                let label = if d.cached && d.loaded >= d.total {
                    "from cache".to_string()
                } else {
                    format!("{} / {}", file_size(d.loaded), file_size(d.total))
                };
                view! {
                    <div class="download">
                        <span class="file">{d.label}</span>
                        <progress max=d.total.max(1) value=d.loaded></progress>
                        <span class="muted">{label}</span>
                    </div>
                }
            })
            .collect_view();
        // Once everything is in, one line; the bars stay one click away.
        Some(if finished {
            view! {
                <details class="downloads">
                    <summary>{format!(
                        "{count} files ({}) checked against the manifest's sha256; {from_cache} from the browser's cache",
                        file_size(total)
                    )}</summary>
                    {rows}
                </details>
            }
            .into_any()
        } else {
            view! { <div class="downloads">{rows}</div> }.into_any()
        })
    }
}

#[component]
pub(crate) fn TextInput() -> impl IntoView {
    let state = state();
    let samples = move || {
        state.manifest.get().map(|m| {
            m.samples
                .into_iter()
                .enumerate()
                .map(|(i, sample)| {
                    let title = sample.clone();
                    let short: String = sample.chars().take(60).collect();
                    view! {
                        <button class="sample" title=title on:click=move |_| state.text.set(sample.clone())>
                            {format!("Sample {}: {short}…", i + 1)}
                        </button>
                    }
                })
                .collect_view()
        })
    };
    view! {
        <textarea id="text" rows="6" placeholder="Paste a case summary…"
            prop:value=move || state.text.get()
            on:input=move |ev| state.text.set(event_target_value(&ev))></textarea>
        <div class="samples">{samples}</div>
    }
}

#[component]
pub(crate) fn OptionsForm() -> impl IntoView {
    let state = state();
    let options = state.options;
    let methods = [
        Method::GaussLegendre,
        Method::RiemannTrapezoid,
        Method::RiemannMiddle,
        Method::RiemannLeft,
        Method::RiemannRight,
        Method::Adaptive,
    ];
    let baselines = Baseline::ALL;
    view! {
        <div class="options">
            <label>"Steps "
                <input id="n_steps" type="number" min="1" max=MAX_STEPS.to_string()
                    prop:value=move || options.get().n_steps.to_string()
                    on:change=move |ev| {
                        match event_target_value(&ev).trim().parse::<usize>() {
                            Ok(n) if (1..=MAX_STEPS).contains(&n) => options.update(|o| o.n_steps = n),
                            _ => state.error.set(Some(format!("Steps must be a whole number from 1 to {MAX_STEPS}."))),
                        }
                    }/>
            </label>
            <label>"Method "
                <select id="method" on:change=move |ev| {
                    if let Ok(m) = event_target_value(&ev).parse::<Method>() { options.update(|o| o.method = m) }
                }>
                    {methods.map(|m| view! {
                        <option value=m.name() selected=move || options.get().method == m>{m.name()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>"Baseline "
                <select id="baseline" on:change=move |ev| {
                    if let Ok(b) = event_target_value(&ev).parse::<Baseline>() { options.update(|o| o.baseline = b) }
                }>
                    {baselines.map(|b| view! {
                        <option value=b.name() selected=move || options.get().baseline == b>{b.name()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>
                <input id="merge" type="checkbox" prop:checked=move || options.get().merge_words
                    on:change=move |ev| { let on = event_target_checked(&ev); options.update(|o| o.merge_words = on) }/>
                " Merge word pieces into words"
            </label>
        </div>
    }
}

#[component]
pub(crate) fn ExplainButton() -> impl IntoView {
    let state = state();
    let explain = expect_context::<ExplainAction>();
    let ready = move || state.manifest.get().is_some() && !explain.busy();
    let status = move || {
        explain.busy().then(|| {
            let elapsed = ((state.now.get() - state.started_at.get()) / 1000.0).max(0.0);
            let steps = state.steps.get().map(|(done, total)| {
                view! {
                    <progress class="steps" max=total.max(1) value=done></progress>
                    <span class="muted">{format!("{done}/{total} points")}</span>
                }
            });
            view! {
                <span class="status" id="status"><span class="spinner"></span>
                    {format!("{} ({elapsed:.0} s)", state.status.get())}
                    {steps}
                </span>
            }
        })
    };
    view! {
        <div class="actions">
            <button id="explain" class="primary" disabled=move || !ready() on:click=move |_| explain.run()>
                "Explain"
            </button>
            {status}
            {move || state.share_link.get().map(|q| view! { <a class="share" href=q>"Link to this explanation"</a> })}
        </div>
    }
}

#[component]
pub(crate) fn Messages() -> impl IntoView {
    let state = state();
    view! {
        {move || state.error.get().map(|e| view! { <div class="error" role="alert" id="error">{e}</div> })}
        {move || state.notices.get().into_iter().map(|n| view! { <div class="notice">{n}</div> }).collect_view()}
    }
}

#[component]
pub(crate) fn ResultsView() -> impl IntoView {
    let state = state();
    move || {
        let outcomes = state.outcomes.get();
        if outcomes.is_empty() {
            return None;
        }
        let merge = state.options.get().merge_words;
        let rows = outcomes.into_iter().map(|o| outcome_row(o, merge)).collect_view();
        let evidence = expect_context::<EvidenceAction>();
        let has_teacher = state.outcomes.get().iter().any(|o| o.is_teacher);
        let removed = state
            .outcomes
            .get()
            .iter()
            .find_map(|o| o.without_teacher_evidence.as_ref().map(|e| e.removed.join(" ")));
        Some(view! {
            <section class="panel" id="results">
                <h2>"Attributions"</h2>
                <div class="actions">
                    <button id="remove-evidence" disabled=move || !has_teacher || evidence.busy() on:click=move |_| evidence.run()>
                        "Remove the teacher's top tokens"
                    </button>
                    <span class="muted">{removed.map_or(
                        "Does each model lose what the teacher loses when the teacher's most important tokens are erased? (forward passes only)".to_string(),
                        |r| format!("removed: {r}"),
                    )}</span>
                </div>
                <div class="legend">
                    <span class="swatch" style=format!("background:{}", colour(-1.0, 1.0))></span>" against the predicted class "
                    <span class="swatch" style=format!("background:{}", colour(1.0, 1.0))></span>" for it "
                    <span class="muted">"(intensity relative to each row's largest |attribution|; hover a token for its value)"</span>
                </div>
                {rows}
            </section>
        })
    }
}

/// One model's row: its prediction, its agreement with the teacher, what erasing the
/// teacher's evidence cost it, and its tokens coloured by attribution.
fn outcome_row(o: ModelOutcome, merge: bool) -> impl IntoView {
    let tokens = token_spans(o.units(merge));
    let similarity = if o.is_teacher {
        "reference".to_string()
    } else {
        optional(o.similarity_to_teacher, 3)
    };
    let evidence = o.without_teacher_evidence.as_ref().map(|e| {
        view! {
            <span class="evidence">{format!(
                "without the teacher's top {}: {:.1}% → {:.1}% (drop {:+.1} points)",
                e.k,
                100.0 * e.before,
                100.0 * e.after,
                100.0 * e.drop()
            )}</span>
        }
    });
    view! {
        <div class="row" data-model=o.name.clone()>
            <div class="row-head">
                <span class="model-name">{o.name.clone()}</span>
                <span>{format!("predicts {} ({:.1}%)", o.label(), 100.0 * o.probability())}</span>
                <span>{format!("cosine to teacher: {similarity}")}</span>
                {evidence}
                <span class="muted">{format!("convergence δ {}", o.explanation.convergence_delta.map_or("—".into(), |d| format!("{d:+.2e}")))}</span>
                <span class="muted">{format!("{:.0} ms", o.ms)}</span>
            </div>
            <div class="tokens">{tokens}</div>
        </div>
    }
}

/// The tokens as spans coloured on the row's own scale (its largest |attribution|, so that a
/// model with small attributions still shows which tokens it leans on); special tokens are
/// left uncoloured.
fn token_spans(units: Vec<Unit>) -> impl IntoView {
    let scale = row_scale(units.iter().map(|u| (u.score, u.special)));
    units
        .into_iter()
        .map(|u| {
            let class = if u.special { "tok special" } else { "tok" };
            let style = if u.special {
                String::new()
            } else {
                format!("background:{}", colour(u.score, scale))
            };
            view! { <span class=class style=style title=format!("{:+.5}", u.score)>{u.text}</span> }
        })
        .collect_view()
}

#[component]
pub(crate) fn Leaderboard() -> impl IntoView {
    let state = state();
    move || {
        let manifest = state.manifest.get()?;
        let results = manifest.results;
        if results.models.is_empty() {
            return None;
        }
        let recommended = results.recommended.clone();
        let rows = results
            .models
            .into_iter()
            .map(|r| {
                let is_recommended = recommended.as_deref() == Some(r.name.as_str());
                leaderboard_row(r, is_recommended)
            })
            .collect_view();
        let verdict = match &recommended {
            Some(name) => format!("Recommended: {name}"),
            None => results.recommendation.clone(),
        };
        let calibration = results.calibration.clone().map(calibration_note);
        Some(view! {
            <section class="panel" id="leaderboard">
                <h2>"Leaderboard (from the training run)"</h2>
                <table>
                    <thead><tr>
                        <th>"model"</th>
                        <th title="independent: labels only; distill: and the teacher's logits; align: and the teacher's outputs on views that pin down its reasons">"trained with"</th>
                        <th title="a checkpoint (a directory, or a Hub id at its commit), the teacher's layers, or scratch">"starts from"</th>
                        <th>"layers×hidden"</th><th>"params"</th><th>"test acc"</th>
                        <th>"macro-F1"</th><th>"similarity to teacher (95% CI)"</th>
                        <th title="0: chance; 1: as close as the teacher retrained with another seed">"calibrated (95% CI)"</th>
                        <th>"Spearman"</th><th>"verdict"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                {calibration}
                <p class="recommendation">{verdict}</p>
            </section>
        })
    }
}

/// One trained model's line of the leaderboard; the run's recommended model is marked.
fn leaderboard_row(r: ModelResult, is_recommended: bool) -> impl IntoView {
    let class = is_recommended.then_some("recommended");
    let ci = r
        .similarity_ci
        .map_or(String::new(), |[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"));
    view! {
        <tr class=class>
            <td>{r.name.clone()}</td>
            <td>{r.objective.map_or("—", |o| o.name()).to_string()}</td>
            <td>{if r.starts_from.is_empty() { "—".to_string() } else { r.starts_from.clone() }}</td>
            <td>{format!("{}x{}", r.layers, r.hidden)}</td>
            <td>{params_text(Some(r.params as u64))}</td>
            <td>{format!("{:.3}", r.accuracy)}</td>
            <td>{format!("{:.3}", r.f1)}</td>
            <td>{format!("{}{ci}", optional(r.similarity_mean, 3))}</td>
            <td>{match (r.calibrated_mean, r.calibrated_ci) {
                (Some(m), Some([lo, hi])) => format!("{m:.2} [{lo:.2}, {hi:.2}]"),
                _ => "—".to_string(),
            }}</td>
            <td>{optional(r.spearman_mean, 3)}</td>
            <td>{r.verdict.to_string()}</td>
        </tr>
    }
}

/// What a similarity means for this task: the ceiling (the teacher against its retrained
/// copies) and chance, and the warnings that say when either is not to be trusted.
fn calibration_note(c: Calibration) -> impl IntoView {
    let ceiling = c.ceiling.map_or(
        "no ceiling (the run retrained no copy of the teacher)".to_string(),
        |x| {
            format!(
                "ceiling {:.3} [{:.3}, {:.3}] (the teacher against its copies retrained with other seeds)",
                x.cosine.mean, x.cosine.ci[0], x.cosine.ci[1]
            )
        },
    );
    let warnings = c
        .teacher_warnings
        .into_iter()
        .map(|w| format!("The reference is unreliable: {w}."))
        .chain(
            c.ceiling_warnings
                .into_iter()
                .map(|w| format!("About the ceiling: {w}.")),
        )
        .map(|w| view! { <li>{w}</li> })
        .collect_view();
    view! {
        <p class="calibration" id="calibration">{format!("Similarity for this task: {ceiling}; chance {:.3}.", c.floor)}</p>
        <ul class="warnings">{warnings}</ul>
    }
}
