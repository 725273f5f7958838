//! `trainer run`: trains the teacher and its students, explains, compares, decides, reports
//! (the stages are [`crate::pipeline::run`]); prints the ranking and where everything went.

use astrid::schema::results::RESULTS_FILE;

use crate::report;
use crate::settings::RunConfig;

pub fn run(config: RunConfig) -> anyhow::Result<()> {
    let outcome = crate::pipeline::run::run(&config)?;
    for line in &outcome.results.summary {
        println!("{line}");
    }
    println!("\n{}", report::table(&outcome.results));
    let out = outcome.out.display();
    println!("\nwrote {out}/{RESULTS_FILE}, report.md, report.html; models in {out}/models/");
    Ok(())
}
