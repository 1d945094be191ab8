//! Waveform tracing: with feature `trace-vcd` or `trace-fst` a trace file is written; without, the
//! model says how to get one.

use caq_sim::rtl::{self, TraceFormat};
use caq_sim::{AxiLite, AxiLiteOptions};
use caq_spec::regmap;

#[test]
fn trace_open_writes_a_waveform_or_names_the_feature_to_enable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("regs.trace");
    let cfg = rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let lib = rtl::top_library(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let mut m = lib.instantiate(1);
    let Some(format) = lib.trace_format() else {
        let err = m.trace_open(&path).expect_err("tracing not compiled in");
        assert!(err.to_string().contains("trace-vcd"), "{err}");
        return;
    };
    m.trace_open(&path).expect("trace opens");
    m.reset(2);
    let mut bus = AxiLite::new(&mut m, AxiLiteOptions::default()).expect("caq_top");
    bus.write(&regmap::DESC_COUNT, 5).expect("DESC_COUNT");
    bus.model().trace_close();
    let bytes = std::fs::read(&path).expect("trace file");
    match format {
        TraceFormat::Vcd => {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                text.starts_with("$version"),
                "{}",
                &text[..text.len().min(200)]
            );
            assert!(text.contains("s_axil_awvalid"), "the ports are traced");
        }
        TraceFormat::Fst => assert!(bytes.len() > 100, "FST of {} bytes", bytes.len()),
    }
}
