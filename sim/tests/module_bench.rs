//! The generic path of `caq_sim::rtl` that block-level benches use: any Verilog module built into
//! the shared model cache and driven by port name — narrow and wide ports, reset, the clock — and
//! the errors a wrong port name or kind gives. The module here is written inline so the test pins
//! the mechanism, not a generated stage whose ports change with the engine.

use caq_sim::SimError;
use caq_sim::rtl::{BuildOptions, ModelLib, ModelSource};

const BENCH: &str = r#"
module bench_acc (
    input  wire         clk,
    input  wire         rst_n,
    input  wire [7:0]   inc,
    input  wire [99:0]  wide_d,
    output wire [15:0]  total,
    output wire [99:0]  wide_q
);
    reg [15:0] total_q;
    reg [99:0] wide_qq;
    always @(posedge clk) begin
        if (!rst_n) begin
            total_q <= 16'd0;
            wide_qq <= 100'd0;
        end else begin
            total_q <= total_q + {8'd0, inc};
            wide_qq <= wide_d;
        end
    end
    assign total = total_q;
    assign wide_q = wide_qq;
endmodule
"#;

fn lib() -> &'static ModelLib {
    let src = ModelSource::module("bench_acc", vec![("bench_acc.v".into(), BENCH.into())]);
    ModelLib::load(&src, BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_module_is_built_and_driven_by_port_name() {
    let lib = lib();
    // In Verilator's order: it declares wide ports after narrow ones.
    let names: Vec<&str> = lib.ports().iter().map(|p| p.name).collect();
    assert_eq!(names, ["clk", "rst_n", "inc", "total", "wide_d", "wide_q"]);
    let mut m = lib.instantiate(7);
    m.reset(2);
    assert_eq!(m.get_by_name("total").unwrap(), 0);
    m.set_by_name("inc", 5).unwrap();
    m.tick_n(3);
    assert_eq!(m.get_by_name("total").unwrap(), 15);
    let wide_d = lib.wide_input("wide_d").unwrap();
    let wide_q = lib.wide_output("wide_q").unwrap();
    m.set_wide(wide_d, &[1, 2, 3, 0xffff_ffff]).unwrap();
    m.tick();
    // Bits above the port's 100 bits are dropped.
    assert_eq!(m.get_wide(wide_q), [1, 2, 3, 0xf]);
    // The same source in the same process is the same library.
    assert!(std::ptr::eq(lib, self::lib()));
}

#[test]
fn wrong_port_names_and_kinds_are_errors_naming_the_port() {
    let lib = lib();
    let msg = |e: SimError| e.to_string();
    assert!(msg(lib.input("nope").unwrap_err()).contains("`nope`"));
    assert!(msg(lib.input("total").unwrap_err()).contains("not an input"));
    assert!(msg(lib.input("clk").unwrap_err()).contains("tick()"));
    assert!(msg(lib.input("wide_d").unwrap_err()).contains("100 bits"));
    let mut m = lib.instantiate(1);
    let inc = lib.input("inc").unwrap();
    assert!(msg(m.set(inc, 256).unwrap_err()).contains("does not fit"));
}
