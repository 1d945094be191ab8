//! Whole networks compiled to descriptor lists and run on the functional device: every node's
//! output bytes equal caq-model's golden `Executor` at the same per-layer bits, at every nesting
//! level and at mixed settings; layers that do not fit are compile errors naming the layer.

mod common;

use caq_driver::HostError;
use caq_driver::compile::{self, CompileOptions, HostOp, PassStart, Program};
use caq_driver::run::{self, RunOptions};
use caq_model::data::Dataset;
use caq_model::graph::Op;
use caq_model::qmodel::QModel;
use caq_model::requant::MeanAsLayer;
use caq_spec::{AccelConfig, DeviceAddr};
use common::*;

/// Runs `images` at every setting in `settings` on one loaded program and compares every node's
/// output with the golden executor.
fn check_equal(q: &QModel, cfg: &AccelConfig, set: &Dataset, images: usize, settings: &[Vec<u8>]) {
    check_equal_with(q, cfg, set, images, settings, CompileOptions::default());
}

/// [`check_equal`] of the program compiled with `opts`.
fn check_equal_with(
    q: &QModel,
    cfg: &AccelConfig,
    set: &Dataset,
    images: usize,
    settings: &[Vec<u8>],
    opts: CompileOptions,
) {
    let one = Run {
        images,
        settings,
        opts,
    };
    check_equal_on(&mut device(cfg), q, cfg, set, one);
}

/// What [`check_equal_on`] runs: `images` at every setting of `settings`, compiled with `opts`.
#[derive(Clone, Copy)]
struct Run<'a> {
    images: usize,
    settings: &'a [Vec<u8>],
    opts: CompileOptions,
}

impl<'a> Run<'a> {
    /// With the default compile options (the RTL comparisons).
    #[cfg_attr(not(feature = "rtl"), allow(dead_code))]
    fn default_options(images: usize, settings: &'a [Vec<u8>]) -> Run<'a> {
        Run {
            images,
            settings,
            opts: CompileOptions::default(),
        }
    }
}

/// [`check_equal`] on any device; returns the device counters of every run, in order.
fn check_equal_on<D: caq_spec::Device>(
    dev: &mut D,
    q: &QModel,
    cfg: &AccelConfig,
    set: &Dataset,
    run: Run<'_>,
) -> Vec<(u64, u64, u64)> {
    let Run {
        images,
        settings,
        opts,
    } = run;
    let dev = &mut *dev;
    let mut counters = Vec::new();
    let mut program =
        compile::compile_with(q, cfg, &settings[0], DeviceAddr(BASE), opts).expect("compiles");
    program.load(dev).expect("loads");
    for bits in settings {
        program.set_bits(bits).expect("set_bits");
        program.write_descriptors(dev).expect("descriptors");
        let ex = q.executor(bits).expect("executor");
        for per_layer in [false, true] {
            let opts = RunOptions {
                per_layer,
                ..RunOptions::default()
            };
            for i in 0..images {
                let img = set.image(i);
                let out = run::run(dev, &program, img, &opts).expect("runs");
                let golden = ex.run(img).expect("golden");
                for n in 0..golden.len() {
                    let got = read_node(dev, &program, n);
                    // A conv with a fused max pool holds its pool's output.
                    let g = &golden[program.fused_pool[n].unwrap_or(n)];
                    let want: Vec<u8> = g.iter().map(|&v| v as u8).collect();
                    assert_eq!(
                        got, want,
                        "node '{}' image {i} bits {bits:?} per_layer {per_layer}",
                        q.graph.nodes[n].name
                    );
                }
                let logits: Vec<u8> = golden.last().unwrap().iter().map(|&v| v as u8).collect();
                assert_eq!(out.output, logits);
                let r = &out.report;
                assert!(r.device.cycles > 0 && r.device.bytes_rd > 0 && r.device.bytes_wr > 0);
                counters.push((r.device.bytes_rd, r.device.bytes_wr, r.device.plane_ops));
                if per_layer {
                    let n: usize = r.segments.iter().map(|s| s.per_layer.len()).sum();
                    assert_eq!(n, program.layers.len());
                }
            }
        }
    }
    counters
}

/// A program's steps: `devN` for a descriptor list of N layers, a host step by its node's name.
fn step_kinds(p: &Program) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| match s {
            compile::Step::Device(seg) => format!("dev{}", seg.layers.len()),
            compile::Step::Host(h) => h.name.clone(),
        })
        .collect()
}

/// The steps of a pass: device steps by their layers and list (`list` for the segment's list
/// from there, `single` for the layer's own), host steps by name.
fn pass_kinds(p: &Program, start: PassStart, stop: Option<usize>) -> Vec<String> {
    p.pass(start, stop)
        .unwrap()
        .iter()
        .map(|s| match s {
            compile::PassStep::Device { layers, list } => format!(
                "layers {layers:?} {}",
                if *list == p.layers[layers.start].single_addr {
                    "single"
                } else {
                    "list"
                }
            ),
            compile::PassStep::Host(h) => h.name.clone(),
        })
        .collect()
}

/// A node's codes as bytes, CHW (a map the device stores transposed, transposed back).
fn read_node<D: caq_spec::Device>(dev: &mut D, p: &Program, node: usize) -> Vec<u8> {
    let b = p.nodes[node].buf;
    let mut v = vec![0u8; b.len as usize];
    dev.mem_read(b.addr, &mut v).unwrap();
    p.nodes[node].chw(v)
}

/// Every uniform level, then mixed settings that alternate the levels over the layers.
fn settings(levels: &[u8], layers: usize) -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = levels.iter().map(|&b| vec![b; layers]).collect();
    s.push((0..layers).map(|i| levels[i % levels.len()]).collect());
    s.push(
        (0..layers)
            .map(|i| levels[(i + 1) % levels.len()])
            .collect(),
    );
    s
}

#[test]
fn digits_mlp_on_the_functional_device_equals_golden_at_every_level() {
    let set = digits();
    let cfg = config("sim-small");
    for levels in [&[8u8, 4][..], &[8, 6, 4]] {
        let q = quantize(mlp(), &set, levels, 7);
        check_equal(&q, &cfg, &set, 4, &settings(levels, 3));
    }
}

#[test]
fn mnist_shaped_lenet_on_the_functional_device_equals_golden_at_every_level() {
    let set = digits28(&digits(), 64);
    let q = quantize(lenet(), &set, &[8, 4], 11);
    check_equal(&q, &config("sim-small"), &set, 2, &settings(&[8, 4], 4));
}

#[test]
fn grouped_depthwise_tall_and_unevenly_padded_convs_equal_golden() {
    // Depthwise and grouped convs run as dense parts with block-diagonal weights; the tall
    // kernel and per-side padding are the descriptor's own. Every level and mixed settings.
    let set = digits();
    let q = quantize(separable(), &set, &[8, 4, 2], 5);
    let program = compile::compile(&q, &config("sim-small"), &[8; 5], DeviceAddr(BASE)).unwrap();
    // sim-small has 4 rows: the depthwise conv of 12 channels is 3 parts, the grouped one of
    // 2 groups of 4 channels 2 parts.
    let parts: Vec<usize> = program.layers.iter().map(|l| l.descs.len()).collect();
    assert_eq!(parts, [1, 3, 1, 2, 1]);
    check_equal(&q, &config("sim-small"), &set, 3, &settings(&[8, 4, 2], 5));
}

/// A 9x7 map is 63 bytes a channel: on sim-small (4 rows, 8-byte bus) a part of 4 channels
/// starts the next one at byte 252, inside a bus word. A depthwise conv of 16 channels and a
/// grouped one (8 groups of 2 -> 2, stride 2 to 5x4).
fn off_word() -> (QModel, Dataset) {
    use caq_model::graph::Padding;
    let conv = |i: usize, o: usize, stride, groups| Op::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel: [3, 3],
        stride,
        padding: Padding::uniform(1),
        groups,
        relu: true,
    };
    let graph = chain(
        [1, 9, 7],
        vec![
            ("c0", conv(1, 16, 1, 1)),
            ("dw", conv(16, 16, 1, 16)),
            ("g2", conv(16, 16, 2, 8)),
            ("gap", Op::GlobalAvgPool),
            ("flatten", Op::Flatten),
            ("fc", dense(16, 10, false)),
        ],
    );
    let set = caq_model::data::synthetic([1, 9, 7], 10, 8, 3).unwrap();
    (quantize(graph, &set, &[8, 4, 2], 9), set)
}

#[test]
fn grouped_parts_read_and_write_slices_that_start_inside_a_bus_word() {
    // Parts fill the rows: the depthwise conv runs as 4 parts of 4 channels, the grouped one as
    // 4 parts of 2 groups; their slices start at multiples of 4·63 and 4·20 (out) bytes.
    let (q, set) = off_word();
    let cfg = config("sim-small");
    let program = compile::compile(&q, &cfg, &[8; 4], DeviceAddr(BASE)).unwrap();
    let parts: Vec<usize> = program.layers.iter().map(|l| l.descs.len()).collect();
    assert_eq!(parts, [1, 4, 4, 1]);
    assert!(
        program.layers[1]
            .descs
            .iter()
            .any(|d| d.input_addr.0 % 8 != 0 && d.output_addr.0 % 8 != 0),
        "some part starts inside a word"
    );
    check_equal(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 4));
}

/// A keyword-spotting-shaped network (DS-CNN's 25x5 maps, 32 channels) whose depthwise convs
/// the compiler lowers by columns on pynq-z2: dw1 reads its map as stored and writes it
/// transposed, dw2 (a 5x3 kernel, uneven padding) reads that transposed map; pw1 and pw2 read and
/// write transposed maps; the host's Add and global pooling read them back CHW.
fn keyword() -> (QModel, Dataset) {
    use caq_model::graph::{Graph, Node, Padding, Src};
    let dw = |c: usize, kernel: [usize; 2], padding| Op::Conv2d {
        in_channels: c,
        out_channels: c,
        kernel,
        stride: 1,
        padding,
        groups: c,
        relu: true,
    };
    let node = |name: &str, op: Op, from: usize| Node {
        name: name.into(),
        op,
        inputs: vec![if from == 0 {
            Src::Input
        } else {
            Src::Node(from - 1)
        }],
    };
    let mut nodes = vec![
        node("c0", conv(1, 32, 3, 1), 0),
        node("dw1", dw(32, [3, 3], Padding::uniform(1)), 1),
        node("pw1", conv(32, 32, 1, 0), 2),
        node(
            "dw2",
            dw(
                32,
                [5, 3],
                Padding {
                    top: 2,
                    left: 1,
                    bottom: 2,
                    right: 1,
                },
            ),
            3,
        ),
        node("pw2", conv(32, 32, 1, 0), 4),
    ];
    nodes.push(Node {
        name: "add".into(),
        op: Op::Add { relu: true },
        inputs: vec![Src::Node(4), Src::Node(2)],
    });
    nodes.push(node("gap", Op::GlobalAvgPool, 6));
    nodes.push(node("flatten", Op::Flatten, 7));
    nodes.push(node("fc", dense(32, 10, false), 8));
    let graph = Graph {
        input_shape: [1, 25, 5],
        nodes,
    };
    let set = caq_model::data::synthetic([1, 25, 5], 10, 8, 4).unwrap();
    (quantize(graph, &set, &[8, 4, 2], 13), set)
}

#[test]
fn depthwise_convs_by_columns_equal_golden() {
    // Every node equal to golden (read back CHW) at every level and mixed settings, on pynq-z2
    // and zcu104; the maps the columns lowering writes are transposed, the others not.
    let (q, set) = keyword();
    for name in ["pynq-z2", "zcu104"] {
        let cfg = config(name);
        let program = compile::compile(&q, &cfg, &[8; 6], DeviceAddr(BASE)).unwrap();
        let lowered: Vec<(&str, bool)> = program
            .layers
            .iter()
            .map(|l| (l.name.as_str(), program.nodes[l.node].transposed))
            .collect();
        assert_eq!(
            lowered,
            [
                ("c0", false),
                ("dw1", true),
                ("pw1", true),
                ("dw2", true),
                ("pw2", true),
                ("fc", false)
            ],
            "{name}"
        );
        check_equal(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 6));
    }
}

#[test]
fn a_global_average_pool_fuses_into_the_conv_before_it() {
    // A pool over 10 channels of 7x3 (not a multiple of sim-small's 4 rows or zcu104's 64) on
    // the conv's result path (descriptor field global_pool): one list, no host step, the conv's
    // buffer the pooled [10, 1, 1] map; every node equal to golden, with the option or without.
    // pynq-z2 is built without it (CAPS0.GLOBAL_POOL = 0): the pool stays a host step there.
    let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 7).unwrap();
    let graph = chain(
        [1, 9, 5],
        vec![
            ("c0", conv(1, 10, 3, 0)),
            ("gap", Op::GlobalAvgPool),
            ("flatten", Op::Flatten),
            ("fc", dense(10, 4, false)),
        ],
    );
    let q = quantize(graph, &set, &[8, 4, 2], 17);
    let p = compile::compile(&q, &config("pynq-z2"), &[8; 2], DeviceAddr(BASE)).unwrap();
    assert_eq!(step_kinds(&p), ["dev1", "gap", "dev1"]);
    for name in ["sim-small", "zcu104"] {
        let cfg = config(name);
        let p = compile::compile(&q, &cfg, &[8; 2], DeviceAddr(BASE)).unwrap();
        assert_eq!(step_kinds(&p), ["dev2"], "{name}");
        assert_eq!(p.fused_pool[0], Some(1));
        assert_eq!(p.nodes[0].shape, [10, 1, 1]);
        let d = p.layers[0].descs[0];
        let mean = MeanAsLayer::of(7 * 3).unwrap().requant.entry();
        assert_eq!(d.global_pool, Some(mean), "{name}");
        assert!(p.layers[1].gap.is_none());
        check_equal(&q, &cfg, &set, 3, &settings(&[8, 4, 2], 2));
        let on = CompileOptions {
            gap_on_device: true,
            ..Default::default()
        };
        let p = compile::compile_with(&q, &cfg, &[8; 2], DeviceAddr(BASE), on).unwrap();
        assert_eq!(step_kinds(&p), ["dev2"], "{name}: fused, not parts");
        assert!(p.layers[1].gap.is_none());
    }
}

#[test]
fn an_average_pool_over_its_whole_map_runs_as_a_global_pool() {
    // AvgPool 7 stride 7 over the conv's 10x7x7 map, as Keras' AveragePooling2D(7) and
    // PyTorch's AvgPool2d(7) export a network's last pool, computes the global pool's codes: the
    // compiler runs it as one (on the conv's result path where the core has CAPS0.GLOBAL_POOL,
    // as parts in fc's list with the option where a standalone ReLU comes first). A 2x2 pool
    // stays what it was. Every node equal to golden.
    let set = caq_model::data::synthetic([1, 9, 9], 10, 8, 7).unwrap();
    let graph = |relu: bool, pool: usize| {
        let mut ops = vec![("c0", conv(1, 10, 3, 0))];
        if relu {
            ops.push(("relu0", Op::Relu));
        }
        ops.extend([
            (
                "pool",
                Op::AvgPool {
                    kernel: pool,
                    stride: pool,
                },
            ),
            ("flatten", Op::Flatten),
            ("fc", dense(10 * (7 / pool) * (7 / pool), 4, false)),
        ]);
        chain([1, 9, 9], ops)
    };
    let host_op = |p: &Program, i: usize| match &p.steps[i] {
        compile::Step::Host(h) => Some(h.op),
        compile::Step::Device(_) => None,
    };
    let q = quantize(graph(true, 7), &set, &[8, 4, 2], 17);
    assert_eq!(
        q.graph.nodes[2].op,
        Op::AvgPool {
            kernel: 7,
            stride: 7
        }
    );
    let on = CompileOptions {
        gap_on_device: true,
        ..Default::default()
    };
    for name in ["sim-small", "pynq-z2", "zcu104"] {
        let cfg = config(name);
        let p = compile::compile(&q, &cfg, &[8; 2], DeviceAddr(BASE)).unwrap();
        assert_eq!(step_kinds(&p), ["dev1", "relu0", "pool", "dev1"], "{name}");
        assert_eq!(host_op(&p, 2), Some(HostOp::GlobalAvgPool), "{name}");
        let p = compile::compile_with(&q, &cfg, &[8; 2], DeviceAddr(BASE), on).unwrap();
        assert_eq!(step_kinds(&p), ["dev1", "relu0", "dev1"], "{name}");
        let gap = p.layers[1].gap.as_ref().expect("fc runs the pool first");
        assert_eq!((gap.name.as_str(), gap.node), ("pool", 2));
        check_equal_with(&q, &cfg, &set, 3, &settings(&[8, 4, 2], 2), on);
    }
    // Without the standalone ReLU the pool fuses into the conv where the core can.
    let q = quantize(graph(false, 7), &set, &[8, 4, 2], 17);
    let cfg = config("zcu104");
    let p = compile::compile(&q, &cfg, &[8; 2], DeviceAddr(BASE)).unwrap();
    assert_eq!(step_kinds(&p), ["dev2"]);
    assert_eq!(p.fused_pool[0], Some(1));
    let mean = MeanAsLayer::of(7 * 7).unwrap().requant.entry();
    assert_eq!(p.layers[0].descs[0].global_pool, Some(mean));
    check_equal(&q, &cfg, &set, 3, &settings(&[8, 4, 2], 2));
    // A pool that does not cover its map is no global one.
    let q = quantize(graph(true, 2), &set, &[8, 4], 17);
    let p = compile::compile_with(&q, &cfg, &[8; 2], DeviceAddr(BASE), on).unwrap();
    assert_eq!(step_kinds(&p), ["dev1", "relu0", "pool", "dev1"]);
    assert_eq!(
        host_op(&p, 2),
        Some(HostOp::AvgPool {
            kernel: 2,
            stride: 2
        })
    );
}

#[test]
fn global_average_pools_run_on_the_device_in_the_next_layers_list() {
    // A pool the conv before it cannot run (a standalone ReLU reads the conv's output first)
    // over 10 channels of 7x3, on the device in fc's list with the option: no host step between
    // the lists; every node equal to golden.
    let graph = |tail: Vec<(&'static str, Op)>| {
        let mut ops = vec![
            ("c0", conv(1, 10, 3, 0)),
            ("relu0", Op::Relu),
            ("gap", Op::GlobalAvgPool),
        ];
        ops.extend(tail);
        chain([1, 9, 5], ops)
    };
    let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 7).unwrap();
    let fc = || vec![("flatten", Op::Flatten), ("fc", dense(10, 4, false))];
    let q = quantize(graph(fc()), &set, &[8, 4, 2], 17);
    let on = CompileOptions {
        gap_on_device: true,
        ..Default::default()
    };
    for name in ["sim-small", "pynq-z2"] {
        let cfg = config(name);
        // By default the pool is a host step.
        let p = compile::compile(&q, &cfg, &[8; 2], DeviceAddr(BASE)).unwrap();
        assert_eq!(step_kinds(&p), ["dev1", "relu0", "gap", "dev1"], "{name}");
        let p = compile::compile_with(&q, &cfg, &[8; 2], DeviceAddr(BASE), on).unwrap();
        assert_eq!(step_kinds(&p), ["dev1", "relu0", "dev1"], "{name}");
        let gap = p.layers[1].gap.as_ref().expect("fc runs the pool first");
        assert_eq!((gap.name.as_str(), gap.node), ("gap", 2));
        // Its parts read slices of relu0's map (21 bytes a channel) and write the pool's buffer.
        let mut next = (p.nodes[1].buf.addr.0, p.nodes[2].buf.addr.0);
        for d in &gap.descs {
            assert_eq!((d.input_addr.0, d.output_addr.0), next, "{name}");
            next.0 += u64::from(d.input.c);
            next.1 += u64::from(d.output.c);
        }
        assert_eq!(
            next.1 - p.nodes[2].buf.addr.0,
            10,
            "{name}: every channel once"
        );
        check_equal_with(&q, &cfg, &set, 3, &settings(&[8, 4, 2], 2), on);
    }
    // After a host step (the keyword network's Add, over 25x5 maps of 32 channels).
    let (kq, kset) = keyword();
    let cfg = config("pynq-z2");
    let p = compile::compile_with(&kq, &cfg, &[8; 6], DeviceAddr(BASE), on).unwrap();
    assert_eq!(step_kinds(&p), ["dev5", "add", "dev1"]);
    check_equal_with(&kq, &cfg, &kset, 2, &settings(&[8, 4, 2], 6), on);
    // A pool with no weight layer after it, or a host step before the next one, stays a host
    // step.
    for (tail, kinds) in [
        (vec![], vec!["dev1", "relu0", "gap"]),
        (
            vec![
                ("relu", Op::Relu),
                ("flatten", Op::Flatten),
                ("fc", dense(10, 4, false)),
            ],
            vec!["dev1", "relu0", "gap", "relu", "dev1"],
        ),
    ] {
        let q = quantize(graph(tail), &set, &[8, 4], 17);
        let cfg = config("sim-small");
        let w = q.weight_layers().len();
        let p = compile::compile_with(&q, &cfg, &vec![8; w], DeviceAddr(BASE), on).unwrap();
        assert_eq!(step_kinds(&p), kinds);
        check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 4], w), on);
    }
}

/// Two residual blocks on 1x9x5 with 6 channels (not a multiple of any config's rows): the
/// first adds a signed conv output to the unsigned output of the ReLU conv before the block, the
/// second adds a signed conv output to the first add's; a global average pool and a dense layer
/// after them.
fn two_blocks() -> caq_model::graph::Graph {
    let linear = linear6([3, 3], 1);
    on_c0(vec![
        ("c1", conv(6, 6, 3, 1), vec![0]),
        ("c2", linear.clone(), vec![1]),
        ("add1", Op::Add { relu: true }, vec![2, 0]),
        ("c3", conv(6, 6, 3, 1), vec![3]),
        ("c4", linear, vec![4]),
        ("add2", Op::Add { relu: true }, vec![5, 3]),
        ("gap", Op::GlobalAvgPool, vec![6]),
        ("flatten", Op::Flatten, vec![7]),
        ("fc", dense(6, 4, false), vec![8]),
    ])
}

/// A 6-to-6 conv without ReLU (its output signed).
fn linear6(kernel: [usize; 2], pad: usize) -> Op {
    Op::Conv2d {
        in_channels: 6,
        out_channels: 6,
        kernel,
        stride: 1,
        padding: caq_model::graph::Padding::uniform(pad),
        groups: 1,
        relu: false,
    }
}

/// A graph on 1x9x5 whose node 0 is "c0", a 3x3 ReLU conv to 6 channels, and then `rest`, each
/// (name, op, the nodes it reads).
fn on_c0(rest: Vec<(&str, Op, Vec<usize>)>) -> caq_model::graph::Graph {
    use caq_model::graph::{Graph, Node, Src};
    let mut nodes = vec![Node {
        name: "c0".into(),
        op: conv(1, 6, 3, 1),
        inputs: vec![Src::Input],
    }];
    nodes.extend(rest.into_iter().map(|(name, op, inputs)| Node {
        name: name.into(),
        op,
        inputs: inputs.into_iter().map(Src::Node).collect(),
    }));
    Graph {
        input_shape: [1, 9, 5],
        nodes,
    }
}

#[test]
fn residual_adds_run_on_the_device_as_layers() {
    // Each add's inputs share one quantizer (the unsigned ReLU output becomes signed with the
    // signed conv output it is added to), so its multipliers are equal; with the option each add
    // ends the list of the conv before it, reading its two inputs as one map of 12 channels
    // (the first buffer followed at once by the second) and writing its own buffer. Every node
    // equal to golden at every level and mixed settings, on every config.
    let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 11).unwrap();
    let q = quantize(two_blocks(), &set, &[8, 4, 2], 23);
    for (add, pair) in [(3, [2, 0]), (6, [5, 3])] {
        let rq = q.adds[add].expect("an add has its requantization");
        assert_eq!(rq.mult_a, rq.mult_b, "node {add}");
        for i in pair {
            assert_eq!(
                q.acts[i], q.acts[pair[0]],
                "node {i} shares add {add}'s quantizer"
            );
        }
    }
    assert!(q.acts[0].signed, "c0 (ReLU) shares add1's signed quantizer");
    caq_model::validate::activations(&q.input, &q.acts, &q.graph, q.config.act_bits)
        .expect("the shared quantizers are valid");
    let on = CompileOptions {
        add_on_device: true,
        ..Default::default()
    };
    let both = CompileOptions {
        gap_on_device: true,
        ..on
    };
    for name in ["sim-small", "pynq-z2", "zcu104"] {
        let cfg = config(name);
        let p = compile::compile(&q, &cfg, &[8; 6], DeviceAddr(BASE)).unwrap();
        assert_eq!(
            step_kinds(&p),
            ["dev3", "add1", "dev2", "add2", "gap", "dev1"],
            "{name}"
        );
        let p = compile::compile_with(&q, &cfg, &[8; 6], DeviceAddr(BASE), on).unwrap();
        // Where the core has CAPS0.GLOBAL_POOL, the pool runs on add2's result path.
        let pooled = cfg.array.global_pool;
        let kinds: &[&str] = if pooled {
            &["dev6"]
        } else {
            &["dev5", "gap", "dev1"]
        };
        assert_eq!(step_kinds(&p), kinds, "{name}");
        assert_eq!(p.fused_pool[6], pooled.then_some(7), "{name}");
        let d = p.layers[4].after[0].descs[0];
        let mean = MeanAsLayer::of(9 * 5).unwrap().requant.entry();
        assert_eq!(d.global_pool, pooled.then_some(mean), "{name}");
        for (li, add, first, second) in [(2, 3, 0, 2), (4, 6, 3, 5)] {
            let [op] = p.layers[li].after.as_slice() else {
                panic!("{name}: the add ends the conv's list");
            };
            assert_eq!(op.node, add);
            let d = op.descs[0];
            let (a, b) = (p.nodes[first].buf, p.nodes[second].buf);
            assert_eq!(b.addr.0, a.addr.0 + a.len, "{name}: the pair is one map");
            assert_eq!(d.input_addr, a.addr);
            assert_eq!(d.output_addr, p.nodes[add].buf.addr);
            assert_eq!((d.input.c, d.output.c), (12, 6));
        }
        let p = compile::compile_with(&q, &cfg, &[8; 6], DeviceAddr(BASE), both).unwrap();
        assert_eq!(step_kinds(&p), ["dev6"], "{name}");
        for opts in [on, both] {
            check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 6), opts);
        }
    }
    // A model whose adds keep their own multipliers (a bundle quantized before the inputs
    // shared a quantizer) keeps them as host steps.
    let mut old = q.clone();
    for a in [3, 6] {
        let rq = old.adds[a].as_mut().unwrap();
        rq.mult_b -= 1;
    }
    let p =
        compile::compile_with(&old, &config("sim-small"), &[8; 6], DeviceAddr(BASE), on).unwrap();
    assert_eq!(
        step_kinds(&p),
        ["dev3", "add1", "dev2", "add2", "gap", "dev1"]
    );
}

#[test]
fn an_add_that_reads_the_pool_of_an_add_equals_golden() {
    // Squeeze-style: add1's global pool is read by add2 (with a conv whose kernel is the whole
    // map), so the pool cannot run on add1's result path: its buffer is half of add2's pair.
    let graph = on_c0(vec![
        ("c1", linear6([3, 3], 1), vec![0]),
        ("add1", Op::Add { relu: false }, vec![1, 0]),
        ("gap", Op::GlobalAvgPool, vec![2]),
        ("c2", linear6([9, 5], 0), vec![0]),
        ("add2", Op::Add { relu: true }, vec![3, 4]),
        ("flatten", Op::Flatten, vec![5]),
        ("fc", dense(6, 4, false), vec![6]),
    ]);
    let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 5).unwrap();
    let q = quantize(graph, &set, &[8, 4, 2], 29);
    let on = CompileOptions {
        add_on_device: true,
        ..Default::default()
    };
    for name in ["sim-small", "zcu104", "pynq-z2"] {
        let cfg = config(name);
        let p = compile::compile_with(&q, &cfg, &[8; 4], DeviceAddr(BASE), on).unwrap();
        assert_eq!(step_kinds(&p), ["dev2", "gap", "dev2"], "{name}");
        assert_eq!(p.fused_pool[2], None, "{name}");
        let (g, c2) = (p.nodes[3].buf, p.nodes[4].buf);
        assert_eq!(c2.addr.0, g.addr.0 + g.len, "{name}: add2's pair");
        for opts in [
            on,
            CompileOptions {
                gap_on_device: true,
                ..on
            },
        ] {
            check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 4), opts);
        }
    }
}

/// A 2x2 average pool over 6 channels of 9x5 (the last row and column dropped), between two convs.
fn pooled_chain() -> caq_model::graph::Graph {
    chain(
        [1, 9, 5],
        vec![
            ("c0", conv(1, 6, 3, 1)),
            (
                "pool",
                Op::AvgPool {
                    kernel: 2,
                    stride: 2,
                },
            ),
            ("c1", conv(6, 5, 3, 1)),
            ("flatten", Op::Flatten),
            ("fc", dense(5 * 4 * 2, 4, false)),
        ],
    )
}

#[test]
fn average_pools_run_on_the_device_at_the_end_of_the_layer_before_them() {
    // With the option the pool is parts of up to R channels at the end of c0's list: one list,
    // no host step; every node equal to golden at every level and mixed settings.
    let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 13).unwrap();
    let q = quantize(pooled_chain(), &set, &[8, 4, 2], 31);
    let on = CompileOptions {
        avg_pool_on_device: true,
        ..Default::default()
    };
    for name in ["sim-small", "pynq-z2", "zcu104"] {
        let cfg = config(name);
        let p = compile::compile(&q, &cfg, &[8; 3], DeviceAddr(BASE)).unwrap();
        assert_eq!(step_kinds(&p), ["dev1", "pool", "dev2"], "{name}");
        let p = compile::compile_with(&q, &cfg, &[8; 3], DeviceAddr(BASE), on).unwrap();
        assert_eq!(step_kinds(&p), ["dev3"], "{name}");
        let [pool] = p.layers[0].after.as_slice() else {
            panic!("{name}: the pool ends c0's list");
        };
        let rows = (cfg.array.rows as usize).min(6);
        assert_eq!(pool.descs.len(), 6usize.div_ceil(rows), "{name}");
        // Each part reads its channels' 9x5 maps and writes their 4x2 means.
        let (mut inp, mut out) = (p.nodes[0].buf.addr.0, p.nodes[1].buf.addr.0);
        for d in &pool.descs {
            assert_eq!((d.input_addr.0, d.output_addr.0), (inp, out), "{name}");
            assert_eq!((d.output.h, d.output.w, d.stride), (4, 2, 2));
            inp += u64::from(d.input.c) * 45;
            out += u64::from(d.output.c) * 8;
        }
        check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 3), on);
    }
    // After a device add in the same list (the residual graph: add, pool, then a host ReLU).
    let set = digits();
    let q = quantize(residual(), &set, &[8, 6, 4], 3);
    let both = CompileOptions {
        add_on_device: true,
        avg_pool_on_device: true,
        ..Default::default()
    };
    let cfg = config("sim-small");
    let p = compile::compile_with(&q, &cfg, &[8; 3], DeviceAddr(BASE), both).unwrap();
    assert_eq!(step_kinds(&p), ["dev2", "relu", "dev1"]);
    let names: Vec<&str> = p.layers[1].after.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["add", "pool"]);
    check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 6, 4], 3), both);
    // Without the add on the device, the add is a host step and the pool after it one too.
    let pool_only = CompileOptions {
        avg_pool_on_device: true,
        ..Default::default()
    };
    let p = compile::compile_with(&q, &cfg, &[8; 3], DeviceAddr(BASE), pool_only).unwrap();
    assert_eq!(step_kinds(&p), ["dev2", "add", "pool", "relu", "dev1"]);
}

/// A max pool of window `k` after a residual add (signed codes), then a conv and a dense layer:
/// no conv can take the pool on its result path.
fn pooled_add(k: usize) -> caq_model::graph::Graph {
    let (h, w) = (9 / k, 5 / k);
    on_c0(vec![
        ("c1", linear6([3, 3], 1), vec![0]),
        ("add1", Op::Add { relu: false }, vec![1, 0]),
        (
            "mp",
            Op::MaxPool {
                kernel: k,
                stride: k,
            },
            vec![2],
        ),
        ("c2", conv(6, 5, 3, 1), vec![3]),
        ("flatten", Op::Flatten, vec![4]),
        ("fc", dense(5 * h * w, 4, false), vec![5]),
    ])
}

#[test]
fn max_pools_run_on_the_device_at_the_end_of_the_layer_before_them() {
    // With both options the add and then the pool end c1's list: the pool as parts of up to R
    // channels, 1x1 copies with the window on their result path, reading the add's signed map
    // and writing the pooled one. One list, every node equal to golden at every level and mixed
    // settings, windows 2 and 4 (9x5 maps: the last rows and columns dropped).
    let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 19).unwrap();
    let add = CompileOptions {
        add_on_device: true,
        ..Default::default()
    };
    let max = CompileOptions {
        max_pool_on_device: true,
        ..Default::default()
    };
    let both = CompileOptions {
        max_pool_on_device: true,
        ..add
    };
    for k in [2, 4] {
        let q = quantize(pooled_add(k), &set, &[8, 4, 2], 37);
        assert!(q.acts[3].signed, "the pool's codes are the add's, signed");
        for name in ["sim-small", "pynq-z2", "zcu104"] {
            let cfg = config(name);
            for (opts, kinds) in [
                (
                    CompileOptions::default(),
                    &["dev2", "add1", "mp", "dev2"][..],
                ),
                // A host step before the pool: it has no list to end.
                (max, &["dev2", "add1", "mp", "dev2"]),
                (add, &["dev2", "mp", "dev2"]),
                (both, &["dev4"]),
            ] {
                let p = compile::compile_with(&q, &cfg, &[8; 4], DeviceAddr(BASE), opts).unwrap();
                assert_eq!(step_kinds(&p), kinds, "{name}, k {k}, {opts:?}");
            }
            let p = compile::compile_with(&q, &cfg, &[8; 4], DeviceAddr(BASE), both).unwrap();
            let [add1, mp] = p.layers[1].after.as_slice() else {
                panic!("{name}: the add and the pool end c1's list");
            };
            assert_eq!((add1.node, mp.node), (2, 3));
            let rows = (cfg.array.rows as usize).min(6);
            assert_eq!(mp.descs.len(), 6usize.div_ceil(rows), "{name}");
            let (mut inp, mut out) = (p.nodes[2].buf.addr.0, p.nodes[3].buf.addr.0);
            for d in &mp.descs {
                assert_eq!((d.input_addr.0, d.output_addr.0), (inp, out), "{name}");
                assert_eq!((d.kernel_h, d.stride, d.max_pool), (1, 1, k as u8));
                assert!(d.flags.in_signed && d.flags.out_signed && !d.flags.relu);
                let written = d.written();
                assert_eq!([written.h, written.w], [(9 / k) as u16, (5 / k) as u16]);
                inp += u64::from(d.input.c) * 45;
                out += u64::from(d.output.c) * ((9 / k) * (5 / k)) as u64;
            }
            check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 4), both);
        }
    }
    // After a grouped conv, whose output no result path pools: parts at the end of its list.
    let grouped = Op::Conv2d {
        in_channels: 6,
        out_channels: 6,
        kernel: [3, 3],
        stride: 1,
        padding: caq_model::graph::Padding::uniform(1),
        groups: 2,
        relu: true,
    };
    let g = on_c0(vec![
        ("g1", grouped, vec![0]),
        ("mp", maxpool(), vec![1]),
        ("flatten", Op::Flatten, vec![2]),
        ("fc", dense(6 * 4 * 2, 4, false), vec![3]),
    ]);
    let q = quantize(g, &set, &[8, 4, 2], 41);
    for name in ["sim-small", "pynq-z2", "zcu104"] {
        let cfg = config(name);
        let p = compile::compile(&q, &cfg, &[8; 3], DeviceAddr(BASE)).unwrap();
        assert_eq!(step_kinds(&p), ["dev2", "mp", "dev1"], "{name}");
        let p = compile::compile_with(&q, &cfg, &[8; 3], DeviceAddr(BASE), max).unwrap();
        assert_eq!(step_kinds(&p), ["dev3"], "{name}");
        assert_eq!(
            p.layers[1].after.len(),
            1,
            "{name}: the pool ends g1's list"
        );
        check_equal_with(&q, &cfg, &set, 2, &settings(&[8, 4, 2], 3), max);
    }
    // A pool whose window is not its stride, or not one the result path pools, stays a host
    // step.
    for (kernel, stride) in [(3, 3), (2, 1)] {
        let mut g = pooled_add(2);
        g.nodes[3].op = Op::MaxPool { kernel, stride };
        let oh = (9 - kernel) / stride + 1;
        let ow = (5 - kernel) / stride + 1;
        g.nodes[6].op = dense(5 * oh * ow, 4, false);
        let q = quantize(g, &set, &[8, 4], 37);
        let cfg = config("sim-small");
        let p = compile::compile_with(&q, &cfg, &[8; 4], DeviceAddr(BASE), both).unwrap();
        assert_eq!(step_kinds(&p), ["dev2", "mp", "dev2"], "{kernel}/{stride}");
        check_equal_with(&q, &cfg, &set, 1, &settings(&[8, 4], 4), both);
    }
}

#[test]
fn a_settings_priced_cycles_are_what_the_device_counts_with_lowered_layers() {
    // The gate search prices a whole setting from the program's lists; a lowered layer (the
    // depthwise conv's 3 parts, the grouped one's 2 on sim-small) has one descriptor per part
    // at every level, all of which run.
    let set = digits();
    let cfg = config("sim-small");
    let q = quantize(separable(), &set, &[8, 4, 2], 5);
    let costs = caq_host::gates::CostTable::new(&q, &cfg).unwrap();
    let mut program = compile::compile(&q, &cfg, &[8; 5], DeviceAddr(BASE)).unwrap();
    let mut dev = device(&cfg);
    program.load(&mut dev).unwrap();
    for bits in settings(&[8, 4, 2], 5) {
        program.set_bits(&bits).unwrap();
        program.write_descriptors(&mut dev).unwrap();
        let out = run::run(&mut dev, &program, set.image(0), &RunOptions::default()).unwrap();
        let priced = costs.cost(&bits, &|_| 0.0).unwrap().perf;
        assert_eq!(priced.cycles, out.report.device.cycles, "bits {bits:?}");
        assert_eq!(priced.bytes_rd, out.report.device.bytes_rd, "bits {bits:?}");
    }
}

#[test]
fn grouped_convs_with_local_regions_equal_golden() {
    // A lowered (block-diagonal) part repeats each row's one region multiplier over its
    // expanded K; the dense convs keep theirs per region (tall: K = 15 in one region of 16).
    let set = digits();
    let cfg = config("sim-small");
    let g = cfg.array.group_size as usize;
    let q = quantize_regions(regional(), &set, &[8, 4, 2], 9, g);
    let program = compile::compile(&q, &cfg, &[8; 5], DeviceAddr(BASE)).unwrap();
    let parts: Vec<usize> = program.layers.iter().map(|l| l.descs.len()).collect();
    assert_eq!(
        parts,
        [1, 3, 1, 2, 1],
        "sim-small has 4 rows: parts of 4 and 2 groups"
    );
    assert!(
        program
            .layers
            .iter()
            .flat_map(|l| &l.descs)
            .all(|d| d.group_size == g as u16),
        "every descriptor carries the regions"
    );
    check_equal(&q, &cfg, &set, 3, &settings(&[8, 4, 2], 5));
    // A grouped conv whose rows span several regions is refused, naming the layer.
    let q = quantize_regions(separable(), &set, &[8, 4], 9, g);
    let e = compile::compile(&q, &cfg, &[8; 5], DeviceAddr(BASE))
        .unwrap_err()
        .to_string();
    assert!(e.contains("grouped") && e.contains("regions"), "{e}");
}

#[test]
fn host_steps_add_avgpool_relu_equal_golden() {
    let set = digits();
    let q = quantize(residual(), &set, &[8, 6, 4], 3);
    check_equal(&q, &config("sim-small"), &set, 3, &settings(&[8, 6, 4], 3));
}

#[test]
fn pools_fuse_into_their_convs_and_flatten_is_free() {
    let set = digits28(&digits(), 16);
    let q = quantize(lenet(), &set, &[8, 4], 1);
    let p = compile::compile(&q, &config("sim-small"), &[8; 4], DeviceAddr(BASE)).unwrap();
    let kinds = step_kinds(&p);
    // Both 2x2 max pools run on the device's result path: one list, no host step.
    assert_eq!(kinds, ["dev4"]);
    let pools: Vec<u8> = p.layers.iter().map(|l| l.desc().max_pool).collect();
    assert_eq!(pools, [2, 2, 0, 0]);
    assert_eq!(p.fused_pool[..4], [Some(1), None, Some(3), None]);
    // A gate network reads pool1, the only reader of conv1: fused, in conv1's buffer, which a
    // pass that stops at conv1 writes with its own single-layer list.
    assert_eq!(p.gate_node, 1);
    assert_eq!(
        pass_kinds(&p, PassStart::Input, Some(0)),
        ["layers 0..1 single"]
    );
    assert_eq!(
        pass_kinds(&p, PassStart::After(0), None),
        ["layers 1..4 list"]
    );
    // The MNIST-shaped LeNet fits the PYNQ-Z2 too, at every level.
    compile::compile(&q, &config("pynq-z2"), &[8; 4], DeviceAddr(BASE)).unwrap();
    // conv1 and pool1 share a buffer, conv2, pool2 and flatten another; the region is
    // bus-aligned and covers every buffer.
    assert_eq!(p.nodes[0].buf, p.nodes[1].buf);
    assert_eq!(p.nodes[0].shape, [16, 12, 12]);
    assert_eq!(p.nodes[4].buf, p.nodes[3].buf);
    assert_eq!(p.nodes[2].buf, p.nodes[3].buf);
    for n in &p.nodes {
        assert_eq!(n.buf.addr.0 % 64, 0);
        assert!(p.region.contains(n.buf.addr, n.buf.len));
    }
}

#[test]
fn pools_the_device_cannot_run_stay_host_steps_and_still_equal_golden() {
    // On 8x8 digits: a 2x2 stride-1 pool (window ≠ stride), a 3x3 stride-3 one (window not a
    // power of two) and a 4x4 one that the device runs; each stays or fuses by the rule.
    let set = digits();
    let pool = |kernel, stride| Op::MaxPool { kernel, stride };
    let graph = chain(
        [1, 8, 8],
        vec![
            ("conv1", conv(1, 8, 3, 1)),
            ("overlap", pool(2, 1)),
            ("conv2", conv(8, 8, 3, 1)),
            ("three", pool(3, 3)),
            ("conv3", conv(8, 16, 1, 0)),
            ("four", pool(2, 2)),
            ("flatten", Op::Flatten),
            ("fc", dense(16, 10, false)),
        ],
    );
    let q = quantize(graph, &set, &[8, 4], 5);
    let cfg = config("sim-small");
    let p = compile::compile(&q, &cfg, &[8; 4], DeviceAddr(BASE)).unwrap();
    let kinds = step_kinds(&p);
    assert_eq!(kinds, ["dev1", "overlap", "dev1", "three", "dev2"]);
    let pools: Vec<u8> = p.layers.iter().map(|l| l.desc().max_pool).collect();
    assert_eq!(pools, [0, 0, 2, 0]);
    // A gate network reads `overlap`, a host step: the pass that stops at conv1 runs it, and
    // the rest of the network starts after it; a pass from a later layer re-runs no host step
    // before that layer.
    assert_eq!(p.gate_node, 1);
    assert_eq!(
        pass_kinds(&p, PassStart::Input, Some(0)),
        ["layers 0..1 list", "overlap"]
    );
    assert_eq!(
        pass_kinds(&p, PassStart::After(0), None),
        ["layers 1..2 list", "three", "layers 2..4 list"]
    );
    assert_eq!(
        pass_kinds(&p, PassStart::Layer(2), None),
        ["layers 2..4 list"]
    );
    assert_eq!(
        pass_kinds(&p, PassStart::Input, Some(2)),
        [
            "layers 0..1 list",
            "overlap",
            "layers 1..2 list",
            "three",
            "layers 2..3 single"
        ]
    );
    check_equal(&q, &cfg, &set, 4, &settings(&[8, 4], 4));
}

#[test]
fn a_run_longer_than_the_devices_list_limit_is_split_into_several_lists() {
    // A device whose lists hold two descriptors runs the three-layer MLP as two STARTs.
    let mut cfg = config("sim-small");
    cfg.limits.max_descriptors = 2;
    let set = digits();
    let q = quantize(mlp(), &set, &[8, 4], 3);
    let p = compile::compile(&q, &cfg, &[8; 3], DeviceAddr(BASE)).unwrap();
    let segs: Vec<usize> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            compile::Step::Device(seg) => Some(seg.layers.len()),
            compile::Step::Host(_) => None,
        })
        .collect();
    assert_eq!(segs, [2, 1]);
    let last: Vec<bool> = p.layers.iter().map(|l| l.last_in_list).collect();
    assert_eq!(last, [false, true, true]);
    check_equal(&q, &cfg, &set, 2, &settings(&[8, 4], 3));
}

#[test]
fn set_bits_changes_only_active_groups() {
    let set = digits();
    let q = quantize(mlp(), &set, &[8, 6, 4], 5);
    let mut p = compile::compile(&q, &config("sim-small"), &[8; 3], DeviceAddr(BASE)).unwrap();
    let before = p.descriptor_image();
    p.set_bits(&[4, 6, 8]).unwrap();
    let after = p.descriptor_image();
    for ((a0, d0), (a1, d1)) in before.iter().zip(&after) {
        assert_eq!(a0, a1);
        // Byte 3 of word 0 is active_groups; every other byte is unchanged.
        for (i, (x, y)) in d0.iter().zip(d1).enumerate() {
            if i != 3 {
                assert_eq!(x, y, "byte {i}");
            }
        }
    }
    assert_eq!(
        p.layers
            .iter()
            .map(|l| l.desc().active_groups)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let e = p.set_bits(&[8, 5, 8]).unwrap_err().to_string();
    assert!(e.contains("fc2") && e.contains("[8, 6, 4]"), "{e}");
    assert_eq!(p.bits(), [4, 6, 8], "a failed set_bits changes nothing");
}

#[test]
fn a_layer_too_large_for_the_device_is_named() {
    // 1024 inputs at 8 ⊃ 4 (9 planes): 16 words x 9 planes per row; sim-small's weight bank
    // holds 128 words per row.
    let g = chain(
        [4, 16, 16],
        vec![
            ("flatten", Op::Flatten),
            ("wide", dense(1024, 16, true)),
            ("out", dense(16, 10, false)),
        ],
    );
    let mut pixels = Vec::new();
    for i in 0..(16 * 1024) {
        pixels.push((i * 7 % 17) as u8);
    }
    let set = Dataset {
        name: "noise".into(),
        shape: [4, 16, 16],
        pixels,
        labels: vec![0; 16],
        max_value: 16,
        classes: 10,
    };
    let q = quantize(g, &set, &[8, 4], 9);
    let cfg = config("sim-small");
    let e = compile::compile(&q, &cfg, &[8, 8], DeviceAddr(BASE)).unwrap_err();
    assert!(
        matches!(e, HostError::Layer { ref layer, .. } if layer == "wide"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("'wide'") && msg.contains("sim-small") && msg.contains("weight words"),
        "{msg}"
    );
    // At 4 bits (4 planes) it fits, and set_bits to 8 is refused the same way.
    let mut p = compile::compile(&q, &cfg, &[4, 4], DeviceAddr(BASE)).unwrap();
    let e = p.set_bits(&[8, 8]).unwrap_err().to_string();
    assert!(e.contains("'wide'") && e.contains("at 8 bits"), "{e}");
    // The same model fits the PYNQ-Z2's larger buffers.
    compile::compile(&q, &config("pynq-z2"), &[8, 8], DeviceAddr(BASE)).unwrap();
}

#[test]
fn a_program_outside_device_memory_is_refused() {
    let set = digits();
    let q = quantize(mlp(), &set, &[8, 4], 5);
    let cfg = config("sim-small");
    let p = compile::compile(&q, &cfg, &[8; 3], DeviceAddr(BASE + (4 << 20) - 4096)).unwrap();
    let e = p.load(&mut device(&cfg)).unwrap_err();
    assert!(matches!(e, HostError::Memory { .. }), "{e}");
}

/// The same whole networks on the Verilator model of the RTL, with a stalling memory: every node
/// byte-equal to golden at every level and mixed setting, and the DMA bytes and plane-steps equal to
/// FuncDevice's, run for run.
#[cfg(feature = "rtl")]
mod rtl {
    use super::*;
    use caq_sim::{AxiMemOptions, RtlDevice};

    fn rtl_device(cfg: &AccelConfig, seed: u64) -> RtlDevice {
        eprintln!("RtlDevice seed {seed}");
        RtlDevice::new(
            cfg,
            seed,
            AxiMemOptions {
                base: BASE,
                size: 4 << 20,
                stall_percent: 20,
                seed,
                ..AxiMemOptions::default()
            },
        )
        .expect("RtlDevice")
    }

    fn both(q: &QModel, set: &Dataset, images: usize, settings: &[Vec<u8>]) {
        let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
        let mut func = device(&cfg);
        let want = check_equal_on(
            &mut func,
            q,
            &cfg,
            set,
            Run::default_options(images, settings),
        );
        let mut rtl = rtl_device(&cfg, 5);
        let got = check_equal_on(
            &mut rtl,
            q,
            &cfg,
            set,
            Run::default_options(images, settings),
        );
        assert_eq!(
            got, want,
            "(bytes read, bytes written, plane-steps) per run: RTL vs FuncDevice"
        );
    }

    #[test]
    fn digits_mlp_on_the_rtl_equals_golden_and_the_functional_device() {
        let set = digits();
        let q = quantize(mlp(), &set, &[8, 6, 4], 7);
        both(&q, &set, 2, &settings(&[8, 6, 4], 3));
    }

    #[test]
    fn grouped_tall_and_unevenly_padded_convs_on_the_rtl_equal_golden() {
        let set = digits();
        let q = quantize(separable(), &set, &[8, 4, 2], 5);
        both(&q, &set, 1, &settings(&[8, 4, 2], 5));
    }

    #[test]
    fn residual_adds_as_layers_on_the_rtl_equal_golden() {
        // Each add reads the pair of buffers its inputs' layers just wrote as one map, at the end
        // of their list; the counters equal the functional device's.
        let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 11).unwrap();
        let q = quantize(two_blocks(), &set, &[8, 4, 2], 23);
        let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
        let opts = CompileOptions {
            add_on_device: true,
            gap_on_device: true,
            ..Default::default()
        };
        let settings = [vec![8; 6], vec![2, 4, 8, 2, 4, 8]];
        let run = Run {
            images: 1,
            settings: &settings,
            opts,
        };
        let want = check_equal_on(&mut device(&cfg), &q, &cfg, &set, run);
        let got = check_equal_on(&mut rtl_device(&cfg, 9), &q, &cfg, &set, run);
        assert_eq!(
            got, want,
            "(bytes read, bytes written, plane-steps) per run: RTL vs FuncDevice"
        );
    }

    #[test]
    fn average_pools_as_layers_on_the_rtl_equal_golden() {
        let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 13).unwrap();
        let q = quantize(pooled_chain(), &set, &[8, 4, 2], 31);
        let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
        let settings = [vec![8; 3], vec![2, 4, 8]];
        let run = Run {
            images: 1,
            settings: &settings,
            opts: CompileOptions {
                avg_pool_on_device: true,
                ..Default::default()
            },
        };
        let want = check_equal_on(&mut device(&cfg), &q, &cfg, &set, run);
        let got = check_equal_on(&mut rtl_device(&cfg, 11), &q, &cfg, &set, run);
        assert_eq!(
            got, want,
            "(bytes read, bytes written, plane-steps) per run: RTL vs FuncDevice"
        );
    }

    #[test]
    fn max_pools_as_layers_on_the_rtl_equal_golden() {
        let set = caq_model::data::synthetic([1, 9, 5], 10, 8, 19).unwrap();
        let q = quantize(pooled_add(2), &set, &[8, 4, 2], 37);
        let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
        let settings = [vec![8; 4], vec![2, 4, 8, 2]];
        let run = Run {
            images: 1,
            settings: &settings,
            opts: CompileOptions {
                add_on_device: true,
                max_pool_on_device: true,
                ..Default::default()
            },
        };
        let want = check_equal_on(&mut device(&cfg), &q, &cfg, &set, run);
        let got = check_equal_on(&mut rtl_device(&cfg, 13), &q, &cfg, &set, run);
        assert_eq!(
            got, want,
            "(bytes read, bytes written, plane-steps) per run: RTL vs FuncDevice"
        );
    }

    #[test]
    fn grouped_parts_whose_slices_start_inside_a_bus_word_on_the_rtl_equal_golden() {
        let (q, set) = off_word();
        both(&q, &set, 1, &settings(&[8, 4, 2], 4));
    }

    #[test]
    fn depthwise_convs_by_columns_on_the_pynq_z2_rtl_equal_golden() {
        // Parts that read and write slices from any byte, on the array they are lowered for.
        let (q, set) = keyword();
        let cfg = config("pynq-z2");
        let levels = [8, 4, 2];
        let settings = [vec![4; 6], levels.iter().cycle().take(6).copied().collect()];
        let want = check_equal_on(
            &mut device(&cfg),
            &q,
            &cfg,
            &set,
            Run::default_options(1, &settings),
        );
        let got = check_equal_on(
            &mut rtl_device(&cfg, 7),
            &q,
            &cfg,
            &set,
            Run::default_options(1, &settings),
        );
        assert_eq!(
            got, want,
            "(bytes read, bytes written, plane-steps): RTL vs FuncDevice"
        );
    }

    #[test]
    fn grouped_convs_with_local_regions_on_the_rtl_equal_golden() {
        let set = digits();
        let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
        let q = quantize_regions(
            regional(),
            &set,
            &[8, 4, 2],
            9,
            cfg.array.group_size as usize,
        );
        both(&q, &set, 1, &settings(&[8, 4, 2], 5));
    }

    #[test]
    fn mnist_shaped_lenet_on_the_rtl_equals_golden_and_the_functional_device() {
        let set = digits28(&digits(), 64);
        let q = quantize(lenet(), &set, &[8, 4], 11);
        both(&q, &set, 1, &settings(&[8, 4], 4));
    }
}
