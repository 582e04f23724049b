//! What a run leaves behind: a table on stdout, the results as JSON, and an SVG plot of each
//! latency distribution (latency by percentile, the usual HDR view).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde_json::{json, Value};

/// One scenario's results: figures in a fixed order, and latency histograms by name.
pub struct Report {
    pub scenario: String,
    pub params: Value,
    pub figures: Vec<(String, String, f64)>,
    pub latencies: Vec<(String, Histogram<u64>)>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, params: Value) -> Self {
        Report {
            scenario: scenario.to_owned(),
            params,
            figures: Vec::new(),
            latencies: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn figure(&mut self, name: &str, unit: &str, value: f64) {
        self.figures.push((name.to_owned(), unit.to_owned(), value));
    }

    pub fn latency(&mut self, name: &str, h: Histogram<u64>) {
        self.latencies.push((name.to_owned(), h));
    }

    pub fn print(&self) {
        println!();
        println!("scenario {}  {}", self.scenario, self.params);
        println!("{:<34} {:>14}  unit", "figure", "value");
        for (name, unit, value) in &self.figures {
            println!("{name:<34} {:>14}  {unit}", fmt(*value));
        }
        if !self.latencies.is_empty() {
            println!();
            println!(
                "{:<16} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for (name, h) in &self.latencies {
                println!(
                    "{:<16} {:>10} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                    name,
                    h.len(),
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.9)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.value_at_quantile(0.999)),
                    ms(h.max()),
                );
            }
        }
        for e in &self.errors {
            println!("error: {e}");
        }
    }

    pub fn to_json(&self) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .figures
            .iter()
            .map(|(n, u, v)| (n.clone(), json!({ "value": v, "unit": u })))
            .collect();
        let latencies: serde_json::Map<String, Value> = self
            .latencies
            .iter()
            .map(|(n, h)| {
                (
                    n.clone(),
                    json!({
                        "count": h.len(),
                        "unit": "ms",
                        "p50": ms(h.value_at_quantile(0.5)),
                        "p90": ms(h.value_at_quantile(0.9)),
                        "p99": ms(h.value_at_quantile(0.99)),
                        "p99_9": ms(h.value_at_quantile(0.999)),
                        "max": ms(h.max()),
                        "mean": h.mean() / 1000.0,
                    }),
                )
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "params": self.params,
            "figures": figures,
            "latency": latencies,
            "errors": self.errors,
            "finished_at": chrono::Utc::now().to_rfc3339(),
        })
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json_path = dir.join(format!("{}.json", self.scenario));
        std::fs::write(&json_path, serde_json::to_vec_pretty(&self.to_json())?)?;
        println!("results: {}", json_path.display());
        if !self.latencies.is_empty() {
            let svg = dir.join(format!("{}.svg", self.scenario));
            self.plot(&svg)?;
            println!("plot:    {}", svg.display());
        }
        Ok(())
    }

    /// Latency against percentile, with the percentile axis stretched towards the tail:
    /// x = log10(1 / (1 - q)), so 90 %, 99 %, 99.9 % sit at 1, 2, 3.
    fn plot(&self, path: &Path) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let curves: Vec<(String, Vec<(f64, f64)>)> = self
            .latencies
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(name, h)| {
                let points = (0..=400)
                    .map(|i| {
                        let x = f64::from(i) / 100.0; // 0 ..= 4 nines
                        let q = 1.0 - 10f64.powf(-x);
                        (x, ms(h.value_at_quantile(q.min(0.99999))))
                    })
                    .collect();
                (name.clone(), points)
            })
            .collect();
        let top = curves
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(0.001f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: latency by percentile", self.scenario),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..4f64, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| match x.round() as i32 {
                0 => "0%".into(),
                1 => "90%".into(),
                2 => "99%".into(),
                3 => "99.9%".into(),
                4 => "99.99%".into(),
                _ => String::new(),
            })
            .x_labels(5)
            .draw()?;
        let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (i, (name, points)) in curves.into_iter().enumerate() {
            let color = palette[i % palette.len()];
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else {
        format!("{:.2}", v)
    }
}
