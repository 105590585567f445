//! The FWI System against the Canadian Forest Service's reference vectors
//! (`tests/data/fwi/`, produced by the R package cffdrs; see its README).

use crate::common;

use stormbell::correlate::fwi::{self, Codes, DayLength, TableOptions};

/// Every computed value equals the reference to its printed 4 significant digits: the
/// difference is at most half a unit in the 4th digit.
fn assert_matches(expected_file: &str, input: &[u8], opts: TableOptions) {
    let expected = String::from_utf8(common::ext_bytes(&format!("fwi/{expected_file}"))).unwrap();
    let table = fwi::table(input, opts).unwrap();
    assert!(table.problems.is_empty(), "{:?}", table.problems);
    let mut lines = expected.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &head[9..],
        ["FFMC", "DMC", "DC", "ISI", "BUI", "FWI", "DSR"]
    );
    let want: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(table.rows.len(), want.len(), "{expected_file}: row count");
    for (n, (row, want)) in table.rows.iter().zip(&want).enumerate() {
        let i = row.indices.unwrap();
        let got = [i.ffmc, i.dmc, i.dc, i.isi, i.bui, i.fwi, i.dsr];
        for (k, (g, w)) in got.iter().zip(&want[9..]).enumerate() {
            let unit = 10f64.powi(w.abs().log10().floor() as i32 - 3);
            assert!(
                (g - w).abs() <= 0.5 * unit * (1.0 + 1e-9),
                "{expected_file} row {} {}: computed {g} ({}), reference {w}",
                n + 1,
                head[9 + k],
                fwi::significant(*g, 4)
            );
        }
    }
}

fn input() -> Vec<u8> {
    common::ext_bytes("fwi/test_fwi.csv")
}

/// The input's header and the given data lines (1-based), as a new file.
fn rows(lines: std::ops::RangeInclusive<usize>) -> Vec<u8> {
    let text = String::from_utf8(input()).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let mut out = format!("{}\n", all[0]);
    for l in lines {
        out.push_str(all[l]);
        out.push('\n');
    }
    out.into_bytes()
}

#[test]
fn defaults_match_fwi_01() {
    assert_matches("fwi_01.csv", &input(), TableOptions::default());
}

#[test]
fn start_values_given_match_fwi_04() {
    let opts = TableOptions {
        start: Codes {
            ffmc: 85.0,
            dmc: 6.0,
            dc: 15.0,
        },
        ..TableOptions::default()
    };
    assert_matches("fwi_04.csv", &input(), opts);
}

#[test]
fn zero_start_values_match_fwi_05() {
    let opts = TableOptions {
        start: Codes {
            ffmc: 0.0,
            dmc: 0.0,
            dc: 0.0,
        },
        ..TableOptions::default()
    };
    assert_matches("fwi_05.csv", &input(), opts);
}

#[test]
fn no_latitude_adjustment_matches_fwi_07() {
    let opts = TableOptions {
        day_length: DayLength::Canadian,
        ..TableOptions::default()
    };
    assert_matches("fwi_07.csv", &input(), opts);
}

#[test]
fn single_rows_from_start_values_match_fwi_09_and_10() {
    assert_matches("fwi_09.csv", &rows(7..=7), TableOptions::default());
    assert_matches("fwi_10.csv", &rows(8..=13), TableOptions::default());
}

#[test]
fn stations_chain_separately_and_bad_rows_are_named_and_skipped() {
    // Two stations interleaved (synthetic ids), one row with humidity out of range.
    let text = String::from_utf8(input()).unwrap();
    let data: Vec<&str> = text.lines().skip(1).take(4).collect();
    let mut csv = String::from("id;long;lat;yr;mon;day;temp;rh;ws;prec\n");
    for d in &data {
        csv.push_str(&format!("A;{d}\nB;{d}\n"));
    }
    csv = csv.replacen(";42;25;0\nB", ";142;25;0\nB", 1);
    let t = fwi::table(csv.as_bytes(), TableOptions::default()).unwrap();
    assert_eq!(t.rows.len(), 8);
    assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
    assert!(
        t.problems[0].starts_with("line 2: relative humidity 142"),
        "{:?}",
        t.problems
    );
    assert!(t.rows[0].indices.is_none());
    // B's chain is the reference; A starts a day late from the start values, so differs.
    let alone = fwi::table(&rows(1..=4), TableOptions::default()).unwrap();
    for k in 0..4 {
        assert_eq!(
            t.rows[2 * k + 1].indices,
            alone.rows[k].indices,
            "B day {k}"
        );
    }
    assert_ne!(t.rows[2].indices, alone.rows[1].indices);
    let mut out = Vec::new();
    fwi::write_csv(&t, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with("id,long,lat,yr,mon,day,temp,rh,ws,prec,FFMC,DMC,DC,ISI,BUI,FWI,DSR\n")
    );
    assert!(out.lines().nth(1).unwrap().ends_with(",,,,,,,"), "{out}");
}
