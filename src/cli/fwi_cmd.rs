//! `stormbell fwi`: the Fire Weather Index System over a CSV of daily noon weather.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use stormbell::correlate::fwi::{self, Codes, DayLength, TableOptions};

use super::{EXIT_PROBLEMS, EXIT_USAGE};

/// Arguments of `stormbell fwi`.
#[derive(Args, Debug)]
pub struct FwiArgs {
    /// Daily weather: long, lat, yr, mon, day, temp (°C), rh (%), ws (km/h), prec (mm), and an
    /// optional station `id`; comma- or semicolon-separated, one row per station-day in date
    /// order. `-` reads standard input.
    #[arg(value_name = "FILE.csv")]
    file: PathBuf,
    /// Use the Canadian (46° N) day-length factors at every latitude.
    #[arg(long)]
    no_lat_adjust: bool,
    /// Start values FFMC,DMC,DC for each station's first day.
    #[arg(long, value_name = "FFMC,DMC,DC", default_value = "85,6,15")]
    start: String,
}

/// Compute and print the table; bad rows are named on standard error and left without
/// indices (exit 1), the rest is computed.
pub fn run(args: FwiArgs) -> u8 {
    let start = match parse_start(&args.start) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stormbell fwi: --start {}: {e}", args.start);
            return EXIT_USAGE;
        }
    };
    let input = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(&args.file)
    };
    let input = match input {
        Ok(b) => b,
        Err(e) => {
            eprintln!("stormbell fwi: {}: {e}", args.file.display());
            return EXIT_USAGE;
        }
    };
    let opts = TableOptions {
        start,
        day_length: if args.no_lat_adjust {
            DayLength::Canadian
        } else {
            DayLength::ByLatitude
        },
    };
    let table = match fwi::table(&input, opts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stormbell fwi: {}: {e}", args.file.display());
            return EXIT_USAGE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = fwi::write_csv(&table, &mut out).and_then(|_| out.flush()) {
        eprintln!("stormbell fwi: writing: {e}");
        return EXIT_PROBLEMS;
    }
    for p in &table.problems {
        eprintln!("stormbell fwi: {}: {p}", args.file.display());
    }
    if table.rows.iter().any(|r| r.indices.is_none()) {
        EXIT_PROBLEMS
    } else {
        0
    }
}

fn parse_start(s: &str) -> Result<Codes, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    match v.as_slice() {
        [ffmc, dmc, dc]
            if (0.0..=101.0).contains(ffmc)
                && *dmc >= 0.0
                && *dc >= 0.0
                && dmc.is_finite()
                && dc.is_finite() =>
        {
            Ok(Codes {
                ffmc: *ffmc,
                dmc: *dmc,
                dc: *dc,
            })
        }
        _ => Err("want three values FFMC (0–101), DMC (≥ 0), DC (≥ 0)".into()),
    }
}
